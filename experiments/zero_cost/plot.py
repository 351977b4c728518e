"""The figure of experiments/zero_cost (zero_cost.png) from its results files: left, Kendall tau
against NB201 CIFAR-10 test accuracy of every metric and rule on part B's evaluation set (95 %
bootstrap intervals); middle (once part C holds all 15,625), the same for jaxnas's forward and cost
metrics and their rules on the whole space; right, the CIFAR-10 test accuracy of what each search picks:
sampling searches at N = 10 / 100 / 1000 on the whole space (part C's jaxnas scores once all 15,625 are
scored, else part A's reference NASWOT scores; mean over 500 draws), the pruning searches
(prune.json, mean and 95 % interval over seeds) and the published TE-NAS / NASI.

Usage: python experiments/zero_cost/plot.py   (after run.py and prune.py)
"""
from __future__ import annotations

import json
import pathlib

HERE = pathlib.Path(__file__).resolve().parent
# part C (jaxnas's forward metrics on all 15,625) rows drawn as sampling searches
PART_C_LINES = ("naswot", "das", "naswot_params (named rule, equal weights)",
                "AZ forward (psd) + flops [logrank, equal weights]", "all forward metrics [logrank]",
                "all forward metrics [zscore]")


def main():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    res = json.loads((HERE / "results.json").read_text())
    prune_file = HERE / "prune.json"
    prune = json.loads(prune_file.read_text())["rules"] if prune_file.exists() else {}
    part_c = res.get("part_c") or {}
    whole = part_c.get("n") == 15625
    fig, axes = plt.subplots(1, 3 if whole else 2, figsize=(21 if whole else 14, 6),
                             gridspec_kw={"width_ratios": [1, 1, 1.2] if whole else [1, 1.2]})
    ax1, ax2 = axes[0], axes[-1]
    if whole:  # Kendall of jaxnas's forward metrics and their rules on the whole space
        ax = axes[1]
        rows_c = part_c["rows"]
        names_c = sorted(rows_c, key=lambda n: rows_c[n]["corr"]["cifar10"]["kendall"])
        ax.barh(range(len(names_c)), [rows_c[n]["corr"]["cifar10"]["kendall"] for n in names_c],
                color=["tab:orange" if "[" in n or "rule" in n else "tab:blue" for n in names_c])
        ax.set_yticks(range(len(names_c)), names_c, fontsize=7)
        ax.axvline(0.75, color="grey", ls=":", lw=1)
        ax.set_xlabel("Kendall tau vs CIFAR-10 test (orange: rules)")
        ax.set_title(f"Part C: all 15,625, forward + cost metrics (calibrated on {part_c['calib_n']})",
                     fontsize=10)

    rows = res["part_b"]["rows"]
    names = [n for n in rows if not n.startswith(("da", "log_nau"))]
    names.sort(key=lambda n: rows[n]["corr"]["cifar10"]["kendall"])
    k = [rows[n]["corr"]["cifar10"]["kendall"] for n in names]
    lo = [k_ - rows[n]["corr"]["cifar10"]["kendall_95"][0] for n, k_ in zip(names, k)]
    hi = [rows[n]["corr"]["cifar10"]["kendall_95"][1] - k_ for n, k_ in zip(names, k)]
    colours = ["tab:orange" if "[" in n or n.startswith("aznas") else "tab:blue" for n in names]
    ax1.barh(range(len(names)), k, xerr=[lo, hi], color=colours, capsize=2)
    ax1.set_yticks(range(len(names)), names, fontsize=7)
    ax1.axvline(0.75, color="grey", ls=":", lw=1)
    ax1.set_xlabel("Kendall tau vs CIFAR-10 test (orange: rules)")
    ax1.set_title(f"Part B: {res['part_b']['eval_n']} seeded architectures, C=16, N=5", fontsize=10)

    part_a = res["part_a"]
    ns = [10, 100, 1000]
    ax2.plot(ns, [part_a["params"]["search"][str(x)][0] for x in ns], marker="o", color="black",
             label="sample: params")
    if whole:  # jaxnas's own whole-space scores
        for n in PART_C_LINES:
            ax2.plot(ns, [part_c["rows"][n]["search"][str(x)][0] for x in ns], marker="o",
                     label=f"sample: {n}")
    else:  # the reference's NASWOT scores stand in
        for n in ("naswot_v1_ref", "naswot_v1_ref + params [logrank, equal weights]",
                  "naswot_v1_ref + params [zscore]"):
            ax2.plot(ns, [part_a[n]["search"][str(x)][0] for x in ns], marker="o", label=f"sample: {n}")
    for i, (name, r) in enumerate(prune.items()):
        mean, _, (a, b) = r["cifar10"]
        ax2.errorbar([1500 * 1.15 ** i], [mean], yerr=[[mean - a], [b - mean]], fmt="s", capsize=3,
                     label=f"prune: {name}")
    ax2.axhline(93.90, color="black", ls="--", lw=1, label="TE-NAS 93.90 (paper)")
    ax2.axhline(93.55, color="grey", ls="--", lw=1, label="NASI 93.55 (paper)")
    ax2.set_xscale("log")
    ax2.set_ylim(90, 94.3)
    ax2.set_xlabel("N candidates (sampling); pruning at the right")
    ax2.set_ylabel("NB201 CIFAR-10 test of the pick")
    ax2.set_title("Search simulations (whole space) and pruning searches", fontsize=10)
    ax2.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(HERE / "zero_cost.png", dpi=110)
    print(HERE / "zero_cost.png")


if __name__ == "__main__":
    main()
