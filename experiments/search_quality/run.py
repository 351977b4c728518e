"""Search quality of SETN and RSPS at the tiny preset on CIFAR-10: 3 seeds each.

For every (method, seed): `jaxnas search --method M --preset tiny --seed S rank_probe=200` on the
shared CIFAR-10 JPEG archive, with the NB201 table. Reports the NB201 CIFAR-10 test accuracy of the
architecture found (mean +- std over seeds) and the Kendall tau between the supernet's one-batch
validation accuracy and NB201 test accuracy on one fixed, seeded set of 200 architectures
(`rank_probe`, the same set for every run). Writes table.md, results.json and quality.png here.
Runs resume if killed; finished runs are reused.

Usage: python experiments/search_quality/run.py [--runs runs/quality] [--seeds 0 1 2]
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
# NB201 paper (ICLR 2020) full-scale numbers, ../shared/data/nb201/REFERENCE_NUMBERS.md
PAPER = {"setn": "87.64 ± 0.00", "rsps": "87.66 ± 1.69 (ICLR table) / 84.07 ± 3.61 (later)"}


def run_one(method: str, seed: int, runs: pathlib.Path) -> dict:
    from jaxnas.cli import main
    out = runs / f"{method}-s{seed}"
    if not (out / "result.json").exists():
        rc = main(["search", "--method", method, "--preset", "tiny", "--seed", str(seed), "--data", str(DATA),
                   "--out", str(out), "--bench-table", str(TABLE), "--no-progress", "rank_probe=200"])
        if rc:
            raise SystemExit(f"search {method} seed {seed} failed with exit code {rc}")
    return json.loads((out / "result.json").read_text())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", default="runs/quality")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--methods", nargs="+", default=["setn", "rsps"])
    a = ap.parse_args()
    runs = pathlib.Path(a.runs)
    rows = []
    for method in a.methods:
        for seed in a.seeds:
            r = run_one(method, seed, runs)
            rows.append({"method": method, "seed": seed, "arch": r["arch"], "index": r["index"],
                         "test_acc": r["bench"][C10], "valid_acc": r.get("valid_acc"),
                         "kendall_tau": r["rank_probe"]["kendall_tau"],
                         "spearman": r["rank_probe"]["spearman"],
                         "wall_time_s": r["wall_time_s"]})
    (HERE / "results.json").write_text(json.dumps(rows, indent=2))
    lines = ["| method | seed | NB201 index | C10 test acc (%) | Kendall tau (200 archs) | wall time (s) |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['method']} | {r['seed']} | {r['index']} | {r['test_acc']:.2f} | "
                     f"{r['kendall_tau']:.3f} | {r['wall_time_s']:.0f} |")
    lines += ["",
              "| method | C10 test acc, mean ± std | Kendall tau, mean ± std | NB201 paper (full scale) |",
              "|---|---|---|---|"]
    for method in a.methods:
        acc = np.array([r["test_acc"] for r in rows if r["method"] == method])
        tau = np.array([r["kendall_tau"] for r in rows if r["method"] == method])
        lines.append(f"| {method} | {acc.mean():.2f} ± {acc.std():.2f} | {tau.mean():.3f} ± {tau.std():.3f} "
                     f"| {PAPER.get(method, '')} |")
    lines.append("| random architecture (NB201 mean) | 87.06 | | |")
    lines.append("| best architecture in NB201 | 94.37 | | |")
    (HERE / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    _plot(rows, a.methods)


def _plot(rows, methods):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    for i, m in enumerate(methods):
        acc = [r["test_acc"] for r in rows if r["method"] == m]
        tau = [r["kendall_tau"] for r in rows if r["method"] == m]
        ax[0].scatter([i] * len(acc), acc, s=40)
        ax[1].scatter([i] * len(tau), tau, s=40)
    ax[0].axhline(87.06, color="gray", ls=":", label="random arch (mean 87.06)")
    ax[0].axhline(94.37, color="k", ls="--", label="best in NB201 (94.37)")
    ax[0].set_ylabel("NB201 CIFAR-10 test accuracy (%) of the found arch")
    ax[1].axhline(0, color="gray", lw=0.5)
    ax[1].set_ylabel("Kendall tau, supernet vs NB201 (200 archs)")
    for a in ax:
        a.set_xticks(range(len(methods)), methods)
    ax[0].legend(fontsize=8)
    fig.suptitle("tiny preset (C=8, N=1, 3 epochs, 300 img/class), 3 seeds, CPU")
    fig.tight_layout()
    fig.savefig(HERE / "quality.png", dpi=110)


if __name__ == "__main__":
    main()
