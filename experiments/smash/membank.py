"""SMASH's correlation study in miniature on its own memory-bank space (issue 31, item 9b; the paper's
Fig. 3: SMASH validation error against the validation error of the same architectures trained
normally).

1. One `jaxnas search --space smash --method smash --preset tiny` run: the tiny memory-bank network
   (depth 4, width 1, N_max 32), `--epochs` epochs on `--max-per-class` CIFAR-10 images per class
   less the last 10 % of each class (held out), then the reference's selection at reduced counts:
   `--random` random architectures, `--perturbed` perturbations of the best, `--markov` chain steps,
   each scored by its error on the held-out images with generated weights (the SMASH score).
2. `--train` of the scored architectures, spread evenly over the range of their SMASH scores, each
   trained from scratch with `jaxnas train --space smash --preset tiny` (the reference's MainNet and
   recipe: SGD Nesterov, lr 0.1 cosine, batch 50) for `--train-epochs` epochs; its error on the
   CIFAR-10 test set.
Reported: Spearman and Kendall tau between SMASH score and trained error with exact permutation
p-values (every ordering of the trained architectures), and a scatter plot.

Writes results_membank.json, table_membank.md and membank.png here; finished runs are reused.
Usage: python experiments/smash/membank.py [--runs runs/smash-membank]
"""
from __future__ import annotations

import argparse
import itertools
import json
import pathlib
import sys

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from common import cli  # noqa: E402  (found through sys.path above)


def exact_rank_p(x, y, stat) -> float:
    """Two-sided p of `stat(x, y)` over every ordering of y."""
    obs = abs(stat(x, y))
    hits = [abs(stat(x, np.asarray(p))) >= obs - 1e-12 for p in itertools.permutations(y)]
    return float(np.mean(hits))


def spread(cands, k):
    """k of the unique candidates, evenly spaced over their SMASH-error order (best and worst kept)."""
    seen, unique = set(), []
    for c in sorted(cands, key=lambda c: c["smash_error"]):
        if c["arch"] not in seen:
            seen.add(c["arch"])
            unique.append(c)
    at = np.unique(np.round(np.linspace(0, len(unique) - 1, k)).astype(int))
    return [unique[i] for i in at], len(unique)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", default="runs/smash-membank-host")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--max-per-class", type=int, default=500)
    ap.add_argument("--random", type=int, default=40)
    ap.add_argument("--perturbed", type=int, default=10)
    ap.add_argument("--markov", type=int, default=10)
    ap.add_argument("--train", type=int, default=8)
    ap.add_argument("--train-epochs", type=int, default=5)
    ap.add_argument("--train-per-class", type=int, default=500)
    a = ap.parse_args()
    from jaxnas.bench import kendall_tau, spearman

    runs = pathlib.Path(a.runs)
    res = cli(["search", "--space", "smash", "--method", "smash", "--preset", "tiny", "--seed", str(a.seed),
               f"max_per_class={a.max_per_class}", f"train.epochs={a.epochs}",
               f"smash_search.random={a.random}", f"smash_search.perturbed={a.perturbed}",
               f"smash_search.markov={a.markov}"], runs / "search")
    picked, unique = spread(res["candidates"], a.train)
    trained = []
    for i, c in enumerate(picked):
        t = cli(["train", "--space", "smash", "--arch", c["arch"], "--preset", "tiny", "--seed", str(a.seed),
                 f"max_per_class={a.train_per_class}", f"train.epochs={a.train_epochs}"], runs / f"train-{i}")
        trained.append({"arch": c["arch"], "smash_error": c["smash_error"], "phase": c["phase"],
                        "flops": c.get("flops"), "params": c.get("params"),
                        "test_error": 100 - t["test_acc"], "trained_params": t["params"],
                        "wall_s": t["wall_time_s"]})
    s = np.array([t["smash_error"] for t in trained])
    e = np.array([t["test_error"] for t in trained])
    corr = {"spearman": spearman(s, e), "spearman_p": exact_rank_p(s, e, spearman),
            "kendall_tau": kendall_tau(s, e), "kendall_p": exact_rank_p(s, e, kendall_tau)}
    errors = np.array([c["smash_error"] for c in res["candidates"]])
    summary = {"min": float(errors.min()), "mean": float(errors.mean()), "max": float(errors.max())}
    out = {"args": vars(a), "search": {"steps": res["steps"], "wall_s": res["wall_time_s"],
                                       "scored": len(res["candidates"]), "unique": unique,
                                       "smash_error": summary},
           "trained": trained, "correlation": corr}
    (HERE / "results_membank.json").write_text(json.dumps(out, indent=2))

    lines = [(f"Memory-bank space, tiny network (depth 4, width 1, N_max 32); SMASH trained {res['steps']} "
              f"steps ({a.epochs} epochs, batch 50) on {a.max_per_class} CIFAR-10 images per class less "
              f"the 10 % held out; {len(res['candidates'])} candidates scored ({unique} unique; SMASH error "
              f"{errors.min():.1f}-{errors.max():.1f} %, mean {errors.mean():.1f}); {len(trained)} of them "
              f"trained from scratch for {a.train_epochs} epochs on {a.train_per_class} images per class "
              "(the reference's MainNet and recipe); error on the CIFAR-10 test set."), "",
             "| SMASH error (%) | trained test error (%) | phase | MFLOPs | params (trained net) | "
             "architecture |",
             "|---|---|---|---|---|---|"]
    for t in sorted(trained, key=lambda t: t["smash_error"]):
        mf = f"{t['flops'] / 1e6:.1f}" if t["flops"] is not None else "-"
        lines.append(f"| {t['smash_error']:.1f} | {t['test_error']:.2f} | {t['phase']} | {mf} | "
                     f"{t['trained_params']:,} | `{t['arch'][:60]}…` |")
    lines += ["", (f"Spearman {corr['spearman']:+.3f} (exact permutation p {corr['spearman_p']:.3f}), "
                   f"Kendall tau {corr['kendall_tau']:+.3f} (p {corr['kendall_p']:.3f}) over {len(trained)} "
                   "architectures.")]
    (HERE / "table_membank.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(4.5, 3.5))
    ax.scatter(s, e)
    ax.set_xlabel("SMASH validation error (%)")
    ax.set_ylabel("test error after training (%)")
    ax.set_title(f"memory-bank space, Spearman {corr['spearman']:+.2f}")
    fig.tight_layout()
    fig.savefig(HERE / "membank.png", dpi=110)


if __name__ == "__main__":
    main()
