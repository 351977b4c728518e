"""DAS's fast-training strategy on NB201: do the activation scores rank better after a few SGD steps?

DAS (arXiv 2212.12132) scores a candidate after a few training iterations; the paper's step count
and learning rate could not be read here, so this sweeps them on a calibration set, judged against
NB201 cifar10-valid *validation* accuracy (never the test accuracy of the fidelity table), as
run.py's step 1 does for DAS's weight. Each setting is one resumable `jaxnas score` run (on CPU the
steps run through the eager kernels, `host_gradients`): SGD (momentum 0.9, Nesterov, weight decay
5e-4) at batch 64 on fixed training images disjoint from the 128 scored ones. Steps 0 = untrained.
With `--subset`, the setting with the best DAS Kendall tau on the calibration set is then scored on
NASLib's 724-architecture subset against test accuracy, next to the untrained scores.

Writes fast_training.json and fast_training.md here.
Usage: python experiments/proxy_fidelity/fast_training.py [--runs runs/fidelity/fast] [--archs 100]
       [--steps 1,5] [--lrs 0.01,0.1] [--subset]
"""
from __future__ import annotations

import argparse
import csv
import json
import pathlib

import numpy as np
from run import HERE, TABLE, VALID, col, das, score

from jaxnas.proxies.activation import DAS_WEIGHTS

W = DAS_WEIGHTS["logdet"]  # the DAS weight chosen in run.py's calibration (1.75)


def _summaries(rows, truth):
    from jaxnas.bench import rank_summary
    named = {"NASWOT": col(rows, "naswot"),  # `--proxy naswot,das`: one column per proxy
             f"DAS (w={W})": das(rows, W), "DA": col(rows, "da")}
    return {k: rank_summary(v, truth) for k, v in named.items()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", default="runs/fidelity/fast")
    ap.add_argument("--archs", default="100", help="calibration: a seeded sample of this many architectures")
    ap.add_argument("--steps", default="1,5")
    ap.add_argument("--lrs", default="0.01,0.1")
    ap.add_argument("--subset", action="store_true", help="score the best setting on NASLib's 724 subset")
    a = ap.parse_args()
    from jaxnas.bench import load_table
    runs = pathlib.Path(a.runs)
    with open(VALID) as f:
        valid = {r["cellstr"]: float(r["valid_top1"]) for r in csv.DictReader(f)}
    settings = [(0, 0.0)] + [(int(k), float(lr)) for k in a.steps.split(",") for lr in a.lrs.split(",")]
    calibration = {}
    for k, lr in settings:
        extra = [f"fast_train_steps={k}", f"fast_train_lr={lr}"] if k else []
        rows = score(runs / f"calibration_k{k}_lr{lr}", a.archs, "naswot,das", extra)
        truth = np.array([valid[r["arch"]] for r in rows])
        calibration[f"steps={k} lr={lr}"] = _summaries(rows, truth)
        print(f"steps={k} lr={lr}", json.dumps({n: round(s["kendall_tau"], 4) for n, s in
                                                calibration[f"steps={k} lr={lr}"].items()}), flush=True)
    das_key = f"DAS (w={W})"
    best = max(calibration, key=lambda s: calibration[s][das_key]["kendall_tau"])
    results = {"calibration_archs": a.archs, "judged_on": "cifar10-valid validation accuracy",
               "das_weight": W, "calibration": calibration, "best_setting": best}
    if a.subset:
        from naslib_subset import load as load_naslib
        table = load_table(TABLE)
        subset_file = runs / "naslib_subset.txt"
        subset_file.write_text("".join(s + "\n" for s in load_naslib()))
        k, lr = (float(v.split("=")[1]) for v in best.split())
        subset = {}
        # else: untrained won
        trained = [(best, [f"fast_train_steps={int(k)}", f"fast_train_lr={lr}"])] if k else []
        for name, extra in [("untrained", [])] + trained:
            rows = score(runs / f"subset_{name.replace(' ', '_').replace('=', '')}", str(subset_file),
                         "naswot,das", extra)
            subset[name] = _summaries(rows, table.values([r["arch"] for r in rows], "cifar10"))
        results["naslib_subset_vs_test_acc"] = subset
    (HERE / "fast_training.json").write_text(json.dumps(results, indent=2))
    _markdown(results)


def _row(setting, summaries):
    return (f"| {setting} | "
            + " | ".join(f"{m['kendall_tau']:.3f} / {m['spearman']:.3f}" for m in summaries.values()) + " |")


def _markdown(res):
    head = (f"Calibration: {res['calibration_archs']} seeded architectures, Kendall tau / Spearman against "
            f"{res['judged_on']}.")
    lines = [head, "", f"| setting | NASWOT | DAS (w={res['das_weight']}) | DA |", "|---|---|---|---|"]
    lines += [_row(s, v) for s, v in res["calibration"].items()]
    lines += ["", f"Best DAS setting on the calibration set: {res['best_setting']}."]
    if "naslib_subset_vs_test_acc" in res:
        lines += ["", "NASLib's 724 subset, against NB201 CIFAR-10 test accuracy:", "",
                  "| setting | NASWOT | DAS | DA |", "|---|---|---|---|"]
        lines += [_row(s, v) for s, v in res["naslib_subset_vs_test_acc"].items()]
    (HERE / "fast_training.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
