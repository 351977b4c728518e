"""PGNAS on its own hybrid multi-kernel network at CPU scale: which kernel sizes lose channels, do the
posterior's candidates beat fixed-rate dropout, and what does the pruned network give retrained?

Per weight-prior length-scale l^2 in `--l2` (50: the supplement's CIFAR-10 value; a larger one makes
the weight term bite at this scale), one `jaxnas search --method pgnas --space hybrid` run: width
hybrid.C=8, one block per stage (6 hybrid convs, 24 (layer, kernel) gate groups), `--epochs` epochs
on `--max-per-class` CIFAR-10 images per class, `--candidates` (mask, weights) pairs from the learned
drop probabilities and as many from the fixed-rate baseline, all on `--eval-images` held-out images
of the search split. Reported: the fraction of input channels dropped per kernel size (paper Table 7
analogue) in the candidates and in the selected pair, its params and FLOPs against the full
network, both candidate populations and best-of-C. Then `jaxnas train` retrains, from scratch with
the same recipe (`--retrain-epochs` epochs on the same images), the selected pruned network of each
l^2 and the full network, and reports CIFAR-10 test accuracy with the parameter count.

Writes results_hybrid.json, table_hybrid.md and hybrid.png here; finished runs are reused.
Usage: python experiments/pgnas/hybrid.py [--runs runs/pgnas-hybrid] [--l2 50 5000]
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]
from common import cli  # noqa: E402  (found through the sys.path entries above)
from run import best_of  # noqa: E402

SIZES = ("hybrid.C=8", "hybrid.blocks=1")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", default="runs/pgnas-hybrid")
    ap.add_argument("--l2", type=float, nargs="+", default=[50.0, 5000.0])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--max-per-class", type=int, default=500)
    ap.add_argument("--candidates", type=int, default=300)
    ap.add_argument("--eval-images", type=int, default=1000)
    ap.add_argument("--retrain-epochs", type=int, default=10)
    a = ap.parse_args()
    from jaxnas.spaces.hybrid import HybridSpace
    space = HybridSpace(8, 1)
    runs, rng, rows = pathlib.Path(a.runs), np.random.default_rng(0), []
    common = ["--preset", "tiny", "--seed", "0", f"max_per_class={a.max_per_class}", *SIZES]
    retrain = ["--preset", "tiny", f"max_per_class={a.max_per_class}", f"train.epochs={a.retrain_epochs}"]
    for l2 in a.l2:
        r = cli(["search", "--method", "pgnas", "--space", "hybrid", *common, f"train.epochs={a.epochs}",
                 f"pgnas.candidates={a.candidates}", f"pgnas.length_scale_sq={l2}",
                 f"eval.batch_size={a.eval_images}"],
                runs / f"search-l2-{l2:g}")
        t = cli(["train", "--arch-from", str(runs / f"search-l2-{l2:g}"), *retrain],
                runs / f"train-l2-{l2:g}")
        c, f = r["candidates_acc"], r["fixed_rate_acc"]
        rows.append({"l2": l2, "mean_drop_p": f["p"], "drop_p": r["drop_p"], "sparsity": r["sparsity"],
                     "candidates_sparsity": r["candidates_sparsity"],
                     "fixed_rate_sparsity": r["fixed_rate_sparsity"],
                     "params": r["params"], "flops": r["flops"], "full_params": r["full_params"],
                     "full_flops": r["full_flops"], "valid_acc": r["valid_acc"],
                     "pgnas": {k: c[k] for k in ("mean", "std", "max")},
                     "fixed": {k: f[k] for k in ("mean", "std", "max")},
                     "best_of_pgnas": best_of(c["values"], (10, 50, 100, 300), rng),
                     "best_of_fixed": best_of(f["values"], (10, 50, 100, 300), rng),
                     "hist": {"pgnas": c["histogram"], "fixed": f["histogram"], "bins": c["bins"]},
                     "retrained_test_acc": t["test_acc"], "retrained_params": t["params"],
                     "wall_s": r["wall_time_s"], "steps": r["steps"]})
    full = cli(["train", "--space", "hybrid", "--arch", space.to_string(space.valid), *retrain, *SIZES],
               runs / "train-full")
    (HERE / "results_hybrid.json").write_text(json.dumps({"rows": rows, "full": {
        "test_acc": full["test_acc"], "params": full["params"]}}, indent=2))

    kernels = [k for k in rows[0]["sparsity"] if k != "all"]
    lines = [(f"Hybrid network C=8, 1 block per stage; {a.epochs} epochs ({rows[0]['steps']} steps) on "
             f"{a.max_per_class} CIFAR-10 images per class; {a.candidates} candidates per population on "
             f"{a.eval_images} held-out images; retraining {a.retrain_epochs} epochs, CIFAR-10 test accuracy "
             "(%)."), "",
             "| l² | mean p | channels dropped, candidates: " + " / ".join(kernels) + " (all) | selected "
             "pair: params (of full), FLOPs (of full) | PGNAS candidates mean ± std (max) | fixed-rate mean "
             "± std (max) | best-of-10 / 100 / 300 PGNAS vs fixed | retrained test acc (params) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        cs = r["candidates_sparsity"]
        bo = " / ".join(f"{r['best_of_pgnas'][c]:.1f} vs {r['best_of_fixed'][c]:.1f}" for c in (10, 100, 300)
                        if c in r["best_of_pgnas"])
        lines.append(
            f"| {r['l2']:g} | {r['mean_drop_p']:.3f} | " + " / ".join(f"{cs[k]:.3f}" for k in kernels)
            + f" ({cs['all']:.3f}) | {r['params']} ({r['params'] / r['full_params']:.0%}), "
            f"{r['flops'] / 1e6:.2f} M ({r['flops'] / r['full_flops']:.0%}) | {r['pgnas']['mean']:.2f} ± "
            f"{r['pgnas']['std']:.2f} ({r['pgnas']['max']:.2f}) | {r['fixed']['mean']:.2f} ± "
            f"{r['fixed']['std']:.2f} ({r['fixed']['max']:.2f}) | {bo} | {r['retrained_test_acc']:.2f} "
            f"({r['retrained_params']}) |")
    lines += ["", f"Full network retrained the same way: {full['test_acc']:.2f} % ({full['params']} params)."]
    (HERE / "table_hybrid.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    plot(rows)


def plot(rows):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(rows) + 1, figsize=(4.5 * (len(rows) + 1), 3.5), squeeze=False)
    for ax, r in zip(axes[0], rows):
        bins = r["hist"]["bins"]
        ax.stairs(r["hist"]["pgnas"], bins, label="PGNAS (learned p)")
        ax.stairs(r["hist"]["fixed"], bins, label=f"fixed p = {r['mean_drop_p']:.3f}")
        ax.set(xlabel="held-out accuracy (%)", ylabel="candidates", title=f"hybrid, l² = {r['l2']:g}")
        ax.legend(fontsize=8)
    ax = axes[0][-1]
    for r in rows:
        p = np.asarray(r["drop_p"])  # [layers, kernels]
        ax.plot(p.mean(0), marker="o", label=f"l² = {r['l2']:g}")
    ax.set_xticks(range(len(rows[0]["drop_p"][0])), [k for k in rows[0]["sparsity"] if k != "all"])
    ax.set(ylabel="learned drop p (mean over layers)", title="drop probability per kernel size")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(HERE / "hybrid.png", dpi=110)


if __name__ == "__main__":
    main()
