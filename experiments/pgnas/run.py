"""PGNAS on NB201's operations at CPU scale: does the learned posterior give better candidates than
fixed-rate dropout, and does it point at good NB201 architectures?

For each weight-prior length-scale l^2 in `--l2` (the supplement's CIFAR-10 value is 50; the CPU
protocol of ../shared/research/seed-methods.md sweeps 1 and 10), one `jaxnas search --method pgnas`
run: C=8, N=1, `--max-per-class` CIFAR-10 images per class, `--epochs` epochs, then `--candidates`
(architecture, weights) pairs sampled from the learned drop probabilities and as many from the
fixed-rate baseline (the mean learned p), all evaluated on `--eval-images` held-out images of the
search split. Reported per run: both candidate populations (mean, std, best), best-of-C for several
C (the expected maximum over random subsets), the selected genotype's NB201 CIFAR-10 test accuracy
and its percentile among all 15,625, how many candidates kept at most one op per edge, and Kendall
tau (permutation p-value) between the posterior's log keep-probability of each architecture
(sum over edges of log P(its op kept); `none`: every gate of the edge dropped) and NB201 accuracy.

Writes results.json, table.md and candidates.png here. Finished runs are reused.
Usage: python experiments/pgnas/run.py [--runs runs/pgnas] [--l2 1 10 50]
"""
from __future__ import annotations

import argparse
import json
import pathlib

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
SHARED = HERE.parents[2] / "shared" / "data"
TABLE = SHARED / "nb201" / "nats_tss_hp200_test_acc.csv"
DATA = SHARED / "cifar10-jpeg" / "cifar10-jpeg.tar.gz"
C10 = "CIFAR10TestAccuracy200Epochs"


def run_one(a, l2: float, runs: pathlib.Path) -> dict:
    from jaxnas.cli import main
    out = runs / f"pgnas-l2-{l2:g}"
    if not (out / "result.json").exists():
        rc = main(["search", "--method", "pgnas", "--preset", "tiny", "--seed", "0", "--data", str(DATA),
                   "--out", str(out), "--bench-table", str(TABLE), "--no-progress", "--overwrite",
                   f"max_per_class={a.max_per_class}", f"train.epochs={a.epochs}",
                   f"pgnas.candidates={a.candidates}", f"pgnas.length_scale_sq={l2}",
                   f"eval.batch_size={a.eval_images}"])
        if rc:
            raise SystemExit(f"pgnas l2={l2} failed with exit code {rc}")
    return json.loads((out / "result.json").read_text())


def best_of(values, sizes, rng, reps=500) -> dict:
    values = np.asarray(values)
    return {c: float(np.mean([values[rng.choice(len(values), c, replace=False)].max() for _ in range(reps)]))
            for c in sizes if c <= len(values)}


def posterior_tau(drop_p, truth, every, rng, n_perm) -> tuple[float, float]:
    """Kendall tau of sum_e log P(arch's op on edge e) under the learned gates, and its p-value."""
    from jaxnas.bench import kendall_tau
    p = np.asarray(drop_p, np.float64)  # [6, 4]: skip, conv1, conv3, pool
    # P(op kept) for ops 1..4; `none` is all four dropped
    logp = np.concatenate([np.log(p).sum(-1, keepdims=True), np.log1p(-p)], -1)  # [6, 5]
    score = logp[np.arange(6), every].sum(-1)
    tau = kendall_tau(score, truth)
    hits = sum(abs(kendall_tau(rng.permutation(score), truth)) >= abs(tau) for _ in range(n_perm))
    return tau, (1 + hits) / (1 + n_perm)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", default="runs/pgnas")
    ap.add_argument("--l2", type=float, nargs="+", default=[1.0, 10.0, 50.0])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--max-per-class", type=int, default=500)
    ap.add_argument("--candidates", type=int, default=300)
    ap.add_argument("--eval-images", type=int, default=1000)
    ap.add_argument("--perms", type=int, default=200)
    a = ap.parse_args()
    from jaxnas.bench import load_table
    from jaxnas.spaces import nb201

    table = load_table(TABLE)
    every = nb201.enumerate_all()
    truth = table.values(every, C10)
    rng = np.random.default_rng(0)
    rows = []
    for l2 in a.l2:
        r = run_one(a, l2, pathlib.Path(a.runs))
        pg, fx = r["candidates_acc"], r["fixed_rate_acc"]
        tau, p = posterior_tau(r["drop_p"], truth, every, rng, a.perms)
        acc = r["bench"][C10]
        rows.append({"l2": l2, "arch": r["arch"], "test_acc": acc,
                     "percentile": float((truth < acc).mean() * 100),
                     "exact_genotype": r["exact_genotype"],
                     "one_op_per_edge": r["one_op_per_edge_candidates"],
                     "candidates": r["candidates_n"], "mean_drop_p": fx["p"],
                     "pgnas": {k: pg[k] for k in ("mean", "std", "max")},
                     "fixed": {k: fx[k] for k in ("mean", "std", "max")},
                     "best_of_pgnas": best_of(pg["values"], (10, 50, 100, 300), rng),
                     "best_of_fixed": best_of(fx["values"], (10, 50, 100, 300), rng),
                     "posterior_tau": round(tau, 4), "posterior_tau_p": p, "wall_time_s": r["wall_time_s"],
                     "hist": {"pgnas": pg["histogram"], "fixed": fx["histogram"], "bins": pg["bins"]}})
    (HERE / "results.json").write_text(json.dumps(rows, indent=2))
    head = (f"C=8, N=1, {a.epochs} epochs on {a.max_per_class} CIFAR-10 images per class; {a.candidates} "
            f"candidates each, evaluated on {a.eval_images} held-out images (search split). Accuracies in %.")
    columns = ("| l² | PGNAS mean ± std (max) | fixed-rate mean ± std (max) | mean p | best-of-10 / 50 / 100 "
               "/ 300, PGNAS vs fixed | selected genotype: NB201 acc (percentile) | one-op-per-edge "
               "candidates | posterior tau (p) |")
    lines = [head, "", columns, "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        bo = " / ".join(f"{r['best_of_pgnas'][c]:.1f} vs {r['best_of_fixed'][c]:.1f}"
                        for c in r["best_of_pgnas"])
        lines.append(f"| {r['l2']:g} | {r['pgnas']['mean']:.2f} ± {r['pgnas']['std']:.2f} "
                     f"({r['pgnas']['max']:.2f}) | {r['fixed']['mean']:.2f} ± {r['fixed']['std']:.2f} "
                     f"({r['fixed']['max']:.2f}) | {r['mean_drop_p']:.3f} | {bo} | {r['test_acc']:.2f} "
                     f"({r['percentile']:.0f}) | {r['one_op_per_edge']} / {r['candidates']} | "
                     f"{r['posterior_tau']:+.3f} ({r['posterior_tau_p']:.3g}) |")
    (HERE / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    plot(rows)


def plot(rows):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(rows), figsize=(4.5 * len(rows), 3.5), squeeze=False)
    for ax, r in zip(axes[0], rows):
        bins = r["hist"]["bins"]
        ax.stairs(r["hist"]["pgnas"], bins, label="PGNAS (learned p)")
        ax.stairs(r["hist"]["fixed"], bins, label=f"fixed p = {r['mean_drop_p']:.3f}")
        ax.set(xlabel="held-out accuracy (%)", ylabel="candidates", title=f"l² = {r['l2']:g}")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(HERE / "candidates.png", dpi=110)


if __name__ == "__main__":
    main()
