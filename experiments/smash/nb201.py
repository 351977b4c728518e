"""SMASH's NB201 adapter against NB201's ground truth at CPU scale, next to RSPS at equal steps and
the #params proxy (issue 31, item 9a).

Per seed: one `jaxnas search --space nb201 --method smash` run (C=8, N=1; a HyperNet generates every
cell convolution from the architecture's one-hot encoding and a noise z; the reference's selection:
`--random` random architectures, `--perturbed` perturbations of the best, `--markov` chain steps,
each scored by its error on the held-out images with its own z) and one `jaxnas search --method rsps`
run with the same data, seed, split (the last 10 % of each class held out, as SMASH), batch size,
steps and held-out images, ranking as many uniform candidates as SMASH scores. Both runs also rank
the same 200 fixed architectures (`eval.rank_probe`; SMASH with one fixed z per architecture).

Reported per seed and as mean ± std: the NB201 CIFAR-10 test accuracy of each pick; Kendall tau and
Spearman of each method's score on the 200 probe architectures against NB201, with permutation
p-values; an exact permutation test of SMASH's picks against RSPS's. The free baseline: #params
(tau on the same 200 and on all 15,625; the expected accuracy of the most-parameter architecture
among as many uniform draws as the methods rank).

Writes results_nb201.json, table_nb201.md and nb201.png here; finished runs are reused.
Usage: python experiments/smash/nb201.py [--runs runs/smash-nb201] [--epochs 15]
"""
from __future__ import annotations

import argparse
import json
import math
import pathlib
import sys

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from common import C10, TABLE, cli, exact_permutation_p, params_pick, permutation_p  # noqa: E402


def search(method, seed, a, runs: pathlib.Path, extra=()) -> dict:
    return cli(["search", "--space", "nb201", "--method", method, "--preset", "tiny", "--seed", str(seed),
                "--bench-table", str(TABLE), f"max_per_class={a.max_per_class}", f"train.epochs={a.epochs}",
                "train.batch_size=50", "train.held_out=0.1", "train.held_out_from=end",
                f"eval.batch_size={a.eval_images}", f"eval.rank_probe={a.probe}", *extra],
               runs / f"{method}-seed{seed}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", default="runs/smash-nb201")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--max-per-class", type=int, default=500)
    ap.add_argument("--eval-images", type=int, default=500)  # the whole held-out split (10 % of 5,000)
    ap.add_argument("--probe", type=int, default=200)
    ap.add_argument("--random", type=int, default=500)
    ap.add_argument("--perturbed", type=int, default=100)
    ap.add_argument("--markov", type=int, default=100)
    ap.add_argument("--perms", type=int, default=1000)
    a = ap.parse_args()
    import jax.numpy as jnp

    from jaxnas.bench import kendall_tau, load_table, spearman
    from jaxnas.spaces import nb201

    table = load_table(TABLE)
    every = nb201.enumerate_all()
    truth = table.values(every, C10)
    params = np.asarray(nb201.SPACE.cost(jnp.asarray(every))["params"], np.float64)
    rng = np.random.default_rng(0)
    runs = pathlib.Path(a.runs)
    scored = a.random + a.perturbed + a.markov

    def probe(res):
        pr = res["rank_probe"]
        s, t = np.asarray(pr["valid_acc"]), truth[np.asarray(pr["index"])]
        tau = kendall_tau(s, t)
        return {"tau": round(tau, 4), "tau_p": permutation_p(s, t, tau, a.perms, rng),
                "spearman": round(spearman(s, t), 4), "top10_overlap": pr["top10_overlap"]}

    rows = []
    for seed in a.seeds:
        sm = search("smash", seed, a, runs, (f"smash_search.random={a.random}",
                                             f"smash_search.perturbed={a.perturbed}",
                                             f"smash_search.markov={a.markov}"))
        rs = search("rsps", seed, a, runs, (f"eval.select_num={scored}",))
        unique = len({c["arch"] for c in sm["candidates"]})
        rows.append({"seed": seed, "smash": sm["bench"][C10], "rsps": rs["bench"][C10],
                     "smash_arch": sm["arch"], "rsps_arch": rs["arch"], "smash_error": sm["smash_error"],
                     "smash_unique_candidates": unique, "smash_probe": probe(sm), "rsps_probe": probe(rs),
                     "steps": sm["steps"], "rsps_steps": rs["steps"],
                     "wall_s": {"smash": sm["wall_time_s"], "rsps": rs["wall_time_s"]}})
    idx = np.asarray(search("smash", a.seeds[0], a, runs)["rank_probe"]["index"])
    tau_params = kendall_tau(params[idx], truth[idx])
    free = {"params_tau_probe": round(tau_params, 4),
            "params_tau_probe_p": permutation_p(params[idx], truth[idx], tau_params, a.perms, rng),
            "params_spearman_probe": round(spearman(params[idx], truth[idx]), 4),
            "params_tau_all": round(kendall_tau(params, truth), 4),
            f"params_pick_{scored}": params_pick(params, truth, scored, rng),
            "random_mean": float(truth.mean()), "best": float(truth.max())}
    col = {k: np.array([r[k] for r in rows]) for k in ("smash", "rsps")}
    summary = {k: (float(v.mean()), float(v.std())) for k, v in col.items()}
    for m in ("smash", "rsps"):
        taus = np.array([r[f"{m}_probe"]["tau"] for r in rows])
        summary[f"{m}_tau"] = (float(taus.mean()), float(taus.std()))
    summary["smash_vs_rsps_p"] = exact_permutation_p(col["smash"], col["rsps"])
    (HERE / "results_nb201.json").write_text(json.dumps({"args": vars(a), "rows": rows, "free": free,
                                                          "summary": summary}, indent=2))

    n = len(rows)
    lines = [(f"C=8, N=1; {a.epochs} epochs ({rows[0]['steps']} steps of batch 50) on {a.max_per_class} "
              f"CIFAR-10 images per class less the last 10 % of each class, which are the {a.eval_images} "
              f"held-out images. SMASH scores {a.random} + {a.perturbed} + {a.markov} candidates, RSPS ranks "
              f"{scored}. NB201 CIFAR-10 test accuracy (%) of each pick; tau / Spearman on {a.probe} fixed "
              f"architectures (permutation p, {a.perms} shuffles)."), "",
             "| seed | SMASH pick | RSPS pick (equal steps) | SMASH tau (p) | SMASH Spearman | RSPS tau (p) "
             "| RSPS Spearman | SMASH unique candidates | wall s SMASH / RSPS |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        sp, rp = r["smash_probe"], r["rsps_probe"]
        lines.append(f"| {r['seed']} | {r['smash']:.2f} | {r['rsps']:.2f} | {sp['tau']:+.3f} "
                     f"({sp['tau_p']:.3g}) | {sp['spearman']:+.3f} | {rp['tau']:+.3f} ({rp['tau_p']:.3g}) | "
                     f"{rp['spearman']:+.3f} | "
                     f"{r['smash_unique_candidates']} of {scored} | {r['wall_s']['smash']:.0f} / "
                     f"{r['wall_s']['rsps']:.0f} |")
    s = summary
    lines += [(f"| **mean ± std** | **{s['smash'][0]:.2f} ± {s['smash'][1]:.2f}** | {s['rsps'][0]:.2f} ± "
               f"{s['rsps'][1]:.2f} | {s['smash_tau'][0]:+.3f} ± {s['smash_tau'][1]:.3f} | | "
               f"{s['rsps_tau'][0]:+.3f} ± {s['rsps_tau'][1]:.3f} | | | |"), "",
              (f"SMASH vs RSPS picks: exact permutation p = {s['smash_vs_rsps_p']:.2f} ({n} + {n} seeds; the "
               f"smallest possible p is {2 / math.comb(2 * n, n):.2f})."),
              (f"Free baseline (no training): #params tau {free['params_tau_probe']:+.3f} (p "
               f"{free['params_tau_probe_p']:.3g}), Spearman {free['params_spearman_probe']:+.3f} on the "
               f"same {a.probe}, tau {free['params_tau_all']:+.3f} on all 15,625; the most-parameter "
               f"architecture among {scored} uniform draws averages {free[f'params_pick_{scored}']:.2f}; a "
               f"uniform architecture averages {free['random_mean']:.2f}; the best is {free['best']:.2f}.")]
    (HERE / "table_nb201.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    plot(runs, a, truth, rows)


def plot(runs, a, truth, rows):
    """Per seed: each method's held-out accuracy of the probe architectures against NB201's."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(rows), figsize=(4 * len(rows), 3.6), sharey=True, squeeze=False)
    for ax, r in zip(axes[0], rows):
        for method, color in (("smash", "tab:blue"), ("rsps", "tab:orange")):
            pr = search(method, r["seed"], a, runs)["rank_probe"]
            ax.scatter(truth[np.asarray(pr["index"])], pr["valid_acc"], s=8, color=color, alpha=0.6,
                       label=f"{method.upper()} (tau {r[method + '_probe']['tau']:+.2f})")
        ax.set_title(f"seed {r['seed']}")
        ax.set_xlabel("NB201 CIFAR-10 test accuracy (%)")
        ax.legend(fontsize=8)
    axes[0][0].set_ylabel("held-out accuracy, shared / generated weights (%)")
    fig.tight_layout()
    fig.savefig(HERE / "nb201.png", dpi=110)


if __name__ == "__main__":
    main()
