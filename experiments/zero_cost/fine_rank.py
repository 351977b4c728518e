"""Fine-ranking the top of a training-free search by a short training run (issue 21, deliverable 5):
does `proxy.fine_rank_top=k` pick better than the rule alone?

Search simulation inside part B's evaluation set of experiments/zero_cost/run.py (its 240 seeded
NB201 architectures, every jaxnas metric scored at C=16, N=5 in runs/zero_cost/eval*): 500 draws
of N candidates; per draw the rule ranks the N and its top k are fine-ranked. A candidate's
fine-rank accuracy depends only on (seed, architecture) -- its fresh weights from fold_in(seed,
index), `fine_rank_steps` SGD steps on fixed batches of the weights half of the search split,
accuracy on the fixed validation batch -- so it is computed once per architecture that ever
reaches a top k, through the method's own `fine_rank` (jaxnas/methods/training_free.py), and the
draws reuse it: the simulation is exactly what `jaxnas search --method <rule>
proxy.fine_rank_top=k` would pick on each draw.

Reported: NB201 CIFAR-10 test accuracy of the pick (mean ± std over draws) for the rule alone, the
rule + fine-ranking, and the best of the top k by test accuracy (the ceiling fine-ranking could
reach); Kendall tau of the fine-rank accuracy against the test accuracy over the architectures
trained; seconds per fine-ranked candidate.

Writes fine_rank.json / fine_rank.md here; the accuracies are cached in --runs.
Usage: python experiments/zero_cost/fine_rank.py [--runs runs/zero_cost] [--n 100] [--top 3] [--steps 50]
"""
from __future__ import annotations

import argparse
import csv
import json
import pathlib
import time

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
SHARED = HERE.parents[2] / "shared" / "data"
TABLE = SHARED / "nb201" / "nats_tss_hp200_test_acc.csv"
DATA = SHARED / "cifar10-jpeg" / "cifar10-jpeg.tar.gz"
RULES = ("aznas", "naswot_params")
SECONDS = "_seconds_per_candidate"  # the cache's one entry that is not an architecture


def eval_set(runs: pathlib.Path) -> dict:
    """{metric: values} of part B's evaluation architectures (runs eval, eval-120, ...), one row each."""
    rows = {}
    for d in sorted(runs.glob("eval*")):
        if d.is_dir() and (d / "scores.csv").exists():
            for r in csv.DictReader((d / "scores.csv").open()):
                rows.setdefault(r["arch"], r)
    if not rows:
        raise SystemExit(f"no evaluation runs under {runs}: run experiments/zero_cost/run.py first")
    rows = list(rows.values())
    out = {k: np.array([float(r[k]) for r in rows]) for k in rows[0] if k not in ("index", "arch")}
    out["arch"] = np.array([r["arch"] for r in rows])
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", default="runs/zero_cost")
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--top", type=int, default=3)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--draws", type=int, default=500)
    a = ap.parse_args()
    from jaxnas import methods
    from jaxnas.bench import kendall_tau, load_table
    from jaxnas.config import Config
    from jaxnas.proxies.combine import NAMED
    from jaxnas.spaces import nb201
    from jaxnas.train.loop import SearchRun
    runs = pathlib.Path(a.runs)
    ev = eval_set(runs)
    archs = np.stack([nb201.from_string(s) for s in ev["arch"]])
    test = load_table(TABLE).values(archs, "CIFAR10TestAccuracy200Epochs")
    rng = np.random.default_rng(0)
    draws = [rng.choice(len(archs), a.n, replace=False) for _ in range(a.draws)]
    tops = {}
    for name in RULES:
        rule = NAMED[name]
        tops[name] = []
        for idx in draws:
            agg = rule({m: ev[m][idx] for m in rule.metrics})
            order = np.lexsort((np.arange(len(idx)), -agg))
            tops[name].append(idx[order[:a.top]])
    need = sorted({int(i) for t in tops.values() for top in t for i in top})

    cache_file = runs / f"fine_rank_s{a.steps}.json"
    cache = json.loads(cache_file.read_text()) if cache_file.exists() else {}
    todo = [i for i in need if ev["arch"][i] not in cache]
    if todo:
        cfg = Config(data=str(DATA), method="naswot_params", seed=0).set({
            "proxy.fine_rank_top": a.top, "proxy.fine_rank_steps": a.steps})
        run = SearchRun(cfg, runs / f"fine_rank_s{a.steps}_run", method_cls=methods.get("naswot_params"),
                        progress=False, overwrite=True)
        t = time.time()
        for k, i in enumerate(todo):
            cache[ev["arch"][i]] = float(run.method.fine_rank(archs[i][None], run.evaluator)[0])
            cache_file.write_text(json.dumps(cache))
            print(f"{k + 1}/{len(todo)} {ev['arch'][i]} {cache[ev['arch'][i]]:.3f} test {test[i]:.2f}",
                  flush=True)
        cache[SECONDS] = (time.time() - t) / len(todo)  # this run's, beside whatever else ran
        cache_file.write_text(json.dumps(cache))
    seconds = cache.get(SECONDS)
    acc = {i: cache[ev["arch"][i]] for i in need}

    results = {"n": a.n, "top": a.top, "steps": a.steps, "draws": a.draws, "trained": len(need),
               "seconds_per_candidate": seconds,
               "kendall_fine_vs_test": kendall_tau(np.array([acc[i] for i in need]), test[need]), "rules": {}}
    for name in RULES:
        picks = [t[int(np.argmax([acc[int(i)] for i in t]))] for t in tops[name]]
        alone, fine = [test[t[0]] for t in tops[name]], [test[i] for i in picks]
        ceiling = [test[t].max() for t in tops[name]]
        results["rules"][name] = {k: [float(np.mean(v)), float(np.std(v))]
                                  for k, v in (("rule", alone), ("rule + fine-rank", fine),
                                               ("best of top k", ceiling))}
        results["rules"][name]["fine_rank_changed_pick"] = float(np.mean([i != t[0] for i,
                                                                          t in zip(picks, tops[name])]))
    (HERE / "fine_rank.json").write_text(json.dumps(results, indent=2))
    lines = [(f"Fine-ranking: {a.draws} draws of N = {a.n} from part B's {len(archs)} evaluation "
              f"architectures; the top {a.top} trained {a.steps} steps each ({len(need)} architectures in "
              "all); NB201 CIFAR-10 test of the pick"),
             "", "| rule | rule alone | rule + fine-rank | best of top k (ceiling) | pick changed |",
             "|---|---|---|---|---|"]
    for name, r in results["rules"].items():
        cells = " | ".join(f"{r[k][0]:.2f} ± {r[k][1]:.2f}" for k in ("rule", "rule + fine-rank",
                                                                      "best of top k"))
        lines.append(f"| {name} | {cells} | {100 * r['fine_rank_changed_pick']:.0f} % |")
    lines += ["",
              (f"Kendall tau of the fine-rank accuracy with the test accuracy over the {len(need)} trained: "
                   f"{results['kendall_fine_vs_test']:.3f}.")]
    (HERE / "fine_rank.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
