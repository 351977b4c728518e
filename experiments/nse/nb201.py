"""NSE's NB201 variant against NB201's ground truth at CPU scale, next to RSPS at equal steps and the
#params proxy (issue 32, item 7).

Per seed: one `jaxnas search --space nb201 --method nse` run (C=8, N=1; each edge trains and searches a
subset of 3 of its 5 operations; two rounds of `--epochs` epochs; at each round end `--samples`
genotypes drawn from the trained categorical are scored on the held-out half and the Pareto front over
(NB201 FLOPs, accuracy) keeps its operations; the pick is the front's most accurate) and one
`jaxnas search --method rsps` run with the same data, seed, split and batch size for twice the epochs
(equal weight steps), ranking as many uniform candidates as NSE scored in its last round.

Reported per seed and as mean ± std: the NB201 CIFAR-10 test accuracy of each pick, an exact
permutation test of NSE's picks against RSPS's, and the marginal NB201 quality of the operations the
last front kept on each edge (the mean accuracy of every genotype using that operation on that edge)
against the edge's pool average. Free baselines: the most-parameter architecture among as many uniform
draws, a uniform architecture. The plot: alpha per edge and operation at each epoch end (seed 0).

Writes results_nb201.json, table_nb201.md and nb201.png here; finished runs are reused.
Usage: python experiments/nse/nb201.py [--runs runs/nse-nb201] [--epochs 5]
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
from common import C10, TABLE, cli, exact_permutation_p, params_pick  # noqa: E402


def search(method, seed, a, runs: pathlib.Path, epochs, extra=()) -> dict:
    return cli(["search", "--space", "nb201", "--method", method, "--preset", "tiny", "--seed", str(seed),
                "--bench-table", str(TABLE), f"max_per_class={a.max_per_class}", f"train.epochs={epochs}",
                "train.batch_size=64", *extra], runs / f"{method}-seed{seed}")


def marginal_quality(truth, every):
    """[6, 5]: the mean NB201 accuracy of the genotypes with operation o on edge e."""
    return np.array([[truth[every[:, e] == o].mean() for o in range(5)] for e in range(6)])


def kept_ops(front, space):
    """bool[6, 5]: the operations the front's genotypes use on each edge."""
    kept = np.zeros((6, 5), bool)
    for row in front:
        arch = space.from_string(row["arch"])
        kept[np.arange(6), arch] = True
    return kept


def alpha_log(run: pathlib.Path):
    """[(epoch, alpha[6][5])] from the run's epoch-end rows."""
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    ends = [r for r in rows if r.get("kind") == "epoch_end"]
    return [(i + 1, np.asarray(r["alpha"])) for i, r in enumerate(ends)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", default="runs/nse-nb201")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=5, help="per round (NSE runs 2 rounds; RSPS twice this)")
    ap.add_argument("--max-per-class", type=int, default=500)
    ap.add_argument("--samples", type=int, default=50)
    a = ap.parse_args()
    import jax.numpy as jnp

    from jaxnas.bench import load_table
    from jaxnas.spaces import nb201

    table = load_table(TABLE)
    every = nb201.enumerate_all()
    truth = table.values(every, C10)
    params = np.asarray(nb201.SPACE.cost(jnp.asarray(every))["params"], np.float64)
    marginal = marginal_quality(truth, every)
    rng = np.random.default_rng(0)
    runs = pathlib.Path(a.runs)

    rows = []
    for seed in a.seeds:
        ns = search("nse", seed, a, runs, a.epochs, (f"nse.sample_num={a.samples}",))
        scored = len(ns["candidates"])  # the last front; the round scored samples + the old front
        rs = search("rsps", seed, a, runs, 2 * a.epochs, (f"eval.select_num={a.samples}",))
        kept = kept_ops(ns["front"], nb201.SPACE)
        rows.append({"seed": seed, "nse": ns["bench"][C10], "rsps": rs["bench"][C10], "nse_arch": ns["arch"],
                     "rsps_arch": rs["arch"], "front_size": scored, "steps": ns["steps"],
                     "rsps_steps": rs["steps"], "kept": kept.astype(int).tolist(),
                     "kept_quality": float(marginal[kept].mean()), "kept_per_edge": int(kept.sum()),
                     "pool_quality": float(marginal.mean()),
                     "wall_s": {"nse": ns["wall_time_s"], "rsps": rs["wall_time_s"]}})
    free = {f"params_pick_{a.samples}": params_pick(params, truth, a.samples, rng),
            "random_mean": float(truth.mean()), "best": float(truth.max()),
            "best_op_per_edge_quality": float(marginal.max(1).mean())}
    col = {k: np.array([r[k] for r in rows]) for k in ("nse", "rsps", "kept_quality")}
    summary = {k: (float(v.mean()), float(v.std())) for k, v in col.items()}
    summary["nse_vs_rsps_p"] = exact_permutation_p(col["nse"], col["rsps"])
    (HERE / "results_nb201.json").write_text(json.dumps({"args": vars(a), "rows": rows, "free": free,
                                                          "marginal": marginal.round(3).tolist(),
                                                          "summary": summary}, indent=2))
    n, r0 = len(rows), rows[0]
    lines = [(f"C=8, N=1; NSE: 2 rounds of {a.epochs} epochs ({r0['steps']} steps of batch 64), a subset of "
              f"3 of 5 operations per edge, {a.samples} genotypes scored per round end; RSPS: {2 * a.epochs} "
              f"epochs ({r0['rsps_steps']} steps), {a.samples} uniform candidates ranked. {a.max_per_class} "
              "CIFAR-10 images per class, half held out. NB201 CIFAR-10 test accuracy (%) of each pick; the "
              "marginal quality of an operation on an edge is the mean NB201 accuracy of all genotypes using "
              "it there."), "",
             "| seed | NSE pick | RSPS pick (equal steps) | last front | ops kept (of 30) "
             "| kept ops' quality | pool average | wall s NSE / RSPS |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['seed']} | {r['nse']:.2f} | {r['rsps']:.2f} | {r['front_size']} | "
                     f"{r['kept_per_edge']} | {r['kept_quality']:.2f} | {r['pool_quality']:.2f} | "
                     f"{r['wall_s']['nse']:.0f} / {r['wall_s']['rsps']:.0f} |")
    s = summary
    lines += [(f"| **mean ± std** | **{s['nse'][0]:.2f} ± {s['nse'][1]:.2f}** | {s['rsps'][0]:.2f} ± "
               f"{s['rsps'][1]:.2f} | | | {s['kept_quality'][0]:.2f} ± {s['kept_quality'][1]:.2f} | "
               f"{r0['pool_quality']:.2f} | |"), "",
              (f"NSE vs RSPS picks: exact permutation p = {s['nse_vs_rsps_p']:.2f} ({n} + {n} seeds; the "
               f"smallest possible p is {2 / math.comb(2 * n, n):.2f})."),
              (f"Free baselines: the most-parameter architecture among {a.samples} uniform draws averages "
               f"{free[f'params_pick_{a.samples}']:.2f}; a uniform architecture {free['random_mean']:.2f}; "
               f"the best is {free['best']:.2f}. The best operation of each edge has marginal quality "
               f"{free['best_op_per_edge_quality']:.2f} on average.")]
    (HERE / "table_nb201.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    plot(runs / f"nse-seed{a.seeds[0]}")


def plot(run: pathlib.Path):
    """alpha of each (edge, operation) at each epoch end, one panel per edge."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from jaxnas.spaces.nb201 import cell
    log = alpha_log(run)
    epochs = [e for e, _ in log]
    alpha = np.stack([a for _, a in log])  # [epochs, 6, 5]
    fig, axes = plt.subplots(1, 6, figsize=(18, 3.2), sharey=True)
    for e, ax in enumerate(axes):
        for o, name in enumerate(cell.OPS):
            ax.plot(epochs, alpha[:, e, o], marker="o", ms=3, label=name)
        ax.set_title(f"edge {e}")
        ax.set_xlabel("epoch (both rounds)")
    axes[0].set_ylabel("alpha (0 when outside the subset)")
    axes[-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(HERE / "nb201.png", dpi=110)


if __name__ == "__main__":
    main()
