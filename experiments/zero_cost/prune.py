"""TE-NAS-style pruning search on NB201 (issue 21, deliverable 5): `jaxnas search --method prune`
with several rules of forward metrics, over seeds.

Every run prunes the whole cell (none dropped first, then three rounds of 24, 18 and 12 mixed cells
scored at C=16, N=5 on 128 CIFAR-10 training images; jaxnas/methods/prune.py). The seed picks the
scoring batch and the one weight draw. The pick is judged by its NB201 test accuracy (CIFAR-10 and,
for transfer, CIFAR-100 and ImageNet16-120), mean ± std over seeds with a 95 % bootstrap interval
of the mean, next to TE-NAS's 93.90 ± 0.47 (NTK + linear regions, its paper) and to the free
parameter-count pick. Only forward metrics and cost metrics: on CPU, mixed cells have no eager
gradient path (the gradient metrics, zico and az_trainability, are GPU work).

Each run is a run directory under --runs (reused when its result.json exists); writes
prune.json and prune.md here.
Usage: python experiments/zero_cost/prune.py [--runs runs/zero_cost/prune] [--seeds 8] [--rules NAME,...]
"""
from __future__ import annotations

import argparse
import json
import pathlib
import time

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
SHARED = HERE.parents[2] / "shared" / "data"
TABLE = SHARED / "nb201" / "nats_tss_hp200_test_acc.csv"
DATA = SHARED / "cifar10-jpeg" / "cifar10-jpeg.tar.gz"
TARGETS = {"cifar10": "CIFAR10TestAccuracy200Epochs", "cifar100": "CIFAR100TestAccuracy200Epochs",
           "imagenet16": "ImageNetTestAccuracy200Epochs"}
TE_NAS = {"cifar10": "93.90 ± 0.47", "cifar100": "71.24 ± 0.56", "imagenet16": "42.38 ± 0.46"}
# name -> (metrics, config overrides, most seeds); every rule a log-rank sum with equal weights
RULES = {
    "params": (("params",), {}, None),
    "naswot": (("naswot",), {}, None),
    "das (min_dist)": (("das",), {"proxy.das_da": "min_dist"}, None),
    "naswot + params": (("naswot", "params"), {}, None),
    "AZ expressivity + progressivity + flops": (("az_expressivity", "az_progressivity", "flops"), {}, None),
    "naswot + AZ expr. + prog. + params": (("naswot", "az_expressivity", "az_progressivity", "params"), {},
                                           None),
    # AZ-NAS's rule (named `aznas`): its trainability needs the traced gradient of each mixed cell,
    # ~2 min to compile and ~5 s a cell on this CPU, ~6 min a search: fewer seeds
    "aznas (AZ-NAS's rule with trainability)": (("az_expressivity", "az_progressivity", "az_trainability",
                                                 "flops"),
                                                 {}, 4),
}


def run_one(runs: pathlib.Path, name: str, seed: int) -> dict:
    from jaxnas import methods
    from jaxnas.config import Config
    from jaxnas.proxies.combine import Rule
    from jaxnas.train.loop import SearchRun
    slug = "".join(c if c.isalnum() else "_" for c in name).strip("_")
    out = runs / f"{slug}-s{seed}"
    if (out / "result.json").exists():
        return json.loads((out / "result.json").read_text())
    metrics, overrides, _ = RULES[name]
    runs.mkdir(parents=True, exist_ok=True)
    rule_file = runs / f"{slug}.rule.json"
    rule_file.write_text(json.dumps(Rule("logrank", metrics, (1.0,) * len(metrics)).to_json()))
    cfg = Config(data=str(DATA), method="prune", seed=seed).set({"proxy.rule": str(rule_file), **overrides})
    return SearchRun(cfg, out, method_cls=methods.get("prune"), progress=False).run()


def mean_ci(x, boot=2000, seed=0):
    rng = np.random.default_rng(seed)
    means = [np.mean(rng.choice(x, len(x))) for _ in range(boot)]
    return float(np.mean(x)), float(np.std(x)), [float(np.percentile(means, 2.5)),
                                                 float(np.percentile(means, 97.5))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", default="runs/zero_cost/prune")
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--rules", default="",
                    help="only these rules (comma-separated names), e.g. to run two at once")
    a = ap.parse_args()
    only = [n.strip() for n in a.rules.split(",") if n.strip()]
    if set(only) - set(RULES):
        raise SystemExit(f"unknown rules {set(only) - set(RULES)}; known: {', '.join(RULES)}")
    from jaxnas.bench import load_table
    from jaxnas.cli import enable_compilation_cache
    from jaxnas.spaces import nb201
    enable_compilation_cache()  # the searches of one rule share their compiled programs
    table = load_table(TABLE)
    results = {}
    for name, (_, _, most) in RULES.items():
        if only and name not in only:
            continue
        picks, walls = [], []
        for seed in range(min(a.seeds, most or a.seeds)):
            t = time.time()
            res = run_one(pathlib.Path(a.runs), name, seed)
            walls.append(time.time() - t)
            arch = nb201.from_string(res["arch"])[None]
            picks.append({"seed": seed, "arch": res["arch"], "wall_time_s": res["wall_time_s"],
                          **{t: float(table.values(arch, c)[0]) for t, c in TARGETS.items()}})
            print(f"{name} seed {seed}: {res['arch']} {picks[-1]['cifar10']:.2f} ({walls[-1]:.0f} s)",
                  flush=True)
        results[name] = {"metrics": list(RULES[name][0]), "overrides": RULES[name][1], "picks": picks,
                         **{t: mean_ci([p[t] for p in picks]) for t in TARGETS},
                         "distinct_picks": len({p["arch"] for p in picks}),
                         "search_wall_time_s": float(np.median([p["wall_time_s"] for p in picks]))}
    (HERE / "prune.json").write_text(json.dumps({"seeds": a.seeds, "te_nas": TE_NAS, "rules": results},
                                                indent=2))
    lines = [(f"Pruning search (`--method prune`), C=16, N=5, 128 images, seeds 0-{a.seeds - 1} (fewer where "
              "noted below); NB201 test accuracy of the pick, mean ± std [95 % bootstrap interval of the "
              "mean]"), "",
             "| rule (log-rank, equal weights) | CIFAR-10 | CIFAR-100 | ImageNet16-120 | distinct picks | s "
             "/ search |",
             "|---|---|---|---|---|---|"]
    for name, r in results.items():
        cells = [f"{r[t][0]:.2f} ± {r[t][1]:.2f} [{r[t][2][0]:.2f}, {r[t][2][1]:.2f}]" for t in TARGETS]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {r['distinct_picks']} | "
                                                          f"{r['search_wall_time_s']:.0f} |")
    lines.append("| TE-NAS (paper: NTK + linear regions) | " + " | ".join(TE_NAS[t] for t in TARGETS) + " | "
                                                                                                        "| |")
    lines += ["", "Seeds per rule: " + ", ".join(f"{n} {len(r['picks'])}" for n, r in results.items()) + "."]
    (HERE / "prune.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
