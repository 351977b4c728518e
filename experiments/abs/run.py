"""ABS on NB201 at CPU scale: does the weight angle rank architectures, and does shrinking by it help?

Part 1, one supernet run (SETN: its weights train on uniformly sampled paths as RSPS's do, and its
alpha gives the magnitude baseline from the same run), C=8, N=1, on `--max-per-class` CIFAR-10
images per class for `--epochs` epochs; the weights are kept at the end of several epochs.
Against NB201's CIFAR-10 test accuracy (Kendall tau, permutation p-values):
  (a) the angle of all 15,625 architectures, at every kept epoch (the paper's "converges fast");
  (b) shared-weight validation accuracy of a fixed seeded set of `--acc-archs` architectures;
  (c) SETN's alpha log-probability of all 15,625;
  and the #params of each architecture's NB201 network (C=16, N=5, jaxnas's cost model) as the free
  baseline. The one-shot drop (20 of 30 operators, >= 1 per edge) by each operator score: the mean
  true rank of the dropped operators (true score = mean NB201 accuracy of the architectures holding
  the operator, rank 1 = worst; random dropping averages 15.5), whether the NB201 optimum survives,
  the best accuracy left.
Part 2, search: RSPS in the full space against ABS(RSPS) (angle, one-shot drop after half the
epochs, then RSPS goes on in the shrunk space) at equal total steps, `--seeds` seeds each.

Writes results.json, table.md and abs.png here (with a _C{C}_N{N} suffix for other sizes). Search
runs resume if killed; finished runs and part 1's figures (runs/abs/part1-*.json) are reused.
Usage: python experiments/abs/run.py [--runs runs/abs] [--epochs 10] [--max-per-class 500]
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from common import permutation_p  # noqa: E402  (found through sys.path above)

SHARED = HERE.parents[2] / "shared" / "data"
TABLE = SHARED / "nb201" / "nats_tss_hp200_test_acc.csv"
DATA = SHARED / "cifar10-jpeg" / "cifar10-jpeg.tar.gz"
C10 = "CIFAR10TestAccuracy200Epochs"
ACC_SEED = 20200  # the accuracy metric's architectures (jaxnas.methods.abs.ACC_ARCHS_SEED)


def tau_row(name, scores, truth, n_perm, rng) -> dict:
    from jaxnas.bench import kendall_tau
    tau = kendall_tau(scores, truth)
    return {"metric": name, "n": len(truth), "kendall_tau": round(tau, 4),
            "p_value": permutation_p(scores, truth, tau, n_perm, rng)}


def supernet_run(a, runs: pathlib.Path) -> dict:
    """The SETN run, with the weights and alpha kept at the end of the chosen epochs."""
    import jax

    from jaxnas.bench import load_table
    from jaxnas.config import PRESETS
    from jaxnas.methods import SETN
    from jaxnas.train.loop import SearchRun

    keep_at = sorted({1, 2, 3, 5, a.epochs // 2, a.epochs} - {0})
    kept = {}

    class Kept(SETN):
        def epoch_end(self, state, evaluator):
            state, metrics = super().epoch_end(state, evaluator)
            if int(state.epoch) + 1 in keep_at:
                kept[int(state.epoch) + 1] = jax.device_get((state.params, state.method["alpha"]))
            return state, metrics

    cfg = PRESETS["tiny"].replace(data=str(DATA), method="setn", max_per_class=a.max_per_class, seed=0).set(
        {"train.epochs": a.epochs, "eval.select_num": 30, "nb201.C": a.C, "nb201.N": a.N})
    out = runs / f"supernet-C{a.C}-N{a.N}"
    run = SearchRun(cfg, out, method_cls=Kept, progress=True, overwrite=True, bench_table=load_table(TABLE))
    theta0 = jax.device_get(run.method.init().params)
    t0 = time.time()
    run.run()
    return {"run": run, "theta0": theta0, "kept": kept, "seconds": time.time() - t0}


def part1(a, runs, rng) -> dict:
    import jax
    import jax.numpy as jnp

    from jaxnas.bench import load_table
    from jaxnas.methods.abs import drop_lowest, option_scores
    from jaxnas.methods.setn import log_prob
    from jaxnas.spaces import nb201
    from jaxnas.spaces.nb201.angle import angle_blocks

    sup = supernet_run(a, runs)
    run, theta0, kept = sup["run"], sup["theta0"], sup["kept"]
    space, table = nb201.SPACE, load_table(TABLE)
    every = nb201.enumerate_all()
    truth = table.values(every, C10)
    params = np.asarray(jax.vmap(lambda x: space.cost(x)["params"])(jnp.asarray(every)), np.float64)
    last = max(kept)
    final_params, alpha = kept[last]
    angles = {e: np.asarray(space.angles(theta0, p, jnp.asarray(every)), np.float64) for e,
              (p, _) in kept.items()}
    logp = np.asarray(log_prob(jnp.asarray(alpha), jnp.asarray(every)), np.float64)
    acc_idx = np.sort(np.random.default_rng(ACC_SEED).choice(len(every), a.acc_archs, replace=False))
    state = run.state.replace(params=jax.tree.map(jnp.asarray, final_params))
    acc = 100 * np.asarray(run.method.rank(state, every[acc_idx], run.evaluator)["acc"], np.float64)

    taus = [tau_row(f"angle, epoch {e}", angles[e], truth, a.perms, rng) for e in sorted(angles)]
    taus += [tau_row("SETN alpha log-probability", logp, truth, a.perms, rng),
             tau_row("#params (NB201 network)", params, truth, a.perms, rng)]
    sub = truth[acc_idx]
    taus_sub = [tau_row("shared-weight accuracy", acc, sub, a.perms, rng),
                tau_row(f"angle, epoch {last}", angles[last][acc_idx], sub, a.perms, rng),
                tau_row("SETN alpha log-probability", logp[acc_idx], sub, a.perms, rng),
                tau_row("#params (NB201 network)", params[acc_idx], sub, a.perms, rng)]

    true_op = option_scores(truth, every, 5)  # mean NB201 accuracy of the architectures holding each op
    true_rank = np.empty(30)
    true_rank[np.argsort(true_op.ravel(), kind="stable")] = np.arange(1, 31)  # 1 = worst operator
    best = int(np.argmax(truth))

    def drop(name, scores):
        allowed, dropped = drop_lowest(scores, np.ones((6, 5), bool), 20)
        keep = space.allows(every, {"ops": allowed})
        return {"metric": name,
                "dropped_true_rank": round(float(np.mean([true_rank[d * 5 + o] for d, o in dropped])), 2),
                "optimum_kept": bool(keep[best]), "space_size": int(keep.sum()),
                "best_acc_left": round(float(truth[keep].max()), 2), "kept_ops": allowed.astype(int).tolist()}

    drops = [drop(f"angle, epoch {e}", option_scores(angles[e], every, 5)) for e in sorted(angles)]
    drops += [drop("shared-weight accuracy", option_scores(acc, every[acc_idx], 5)),
              drop("SETN alpha (magnitude)", np.asarray(jax.nn.softmax(jnp.asarray(alpha), -1), np.float64)),
              drop("#params (NB201 network)", option_scores(params, every, 5)),
              drop("true operator score (oracle)", true_op)]
    # how much of theta0's squared norm the search cells hold, for the all-3x3-conv architecture: at
    # C=8, N=1 the stem, reduction blocks and head dominate the vector (the small scale's cost)
    blocks = angle_blocks(theta0, theta0)
    cell_share = 1 - float(blocks.fixed[1]) / _norm0(blocks, np.full(6, nb201.CONV3))
    return {"supernet_seconds": round(sup["seconds"], 1), "epochs": a.epochs, "C": a.C, "N": a.N,
            "kept_epochs": sorted(kept),
            "taus_all": taus, "taus_subset": taus_sub, "drops": drops,
            "cell_share_of_norm": round(cell_share, 4),
            "angle_by_epoch": {e: {"mean": float(angles[e].mean()),
                                   "std": float(angles[e].std())} for e in angles}}


def _norm0(blocks, arch) -> float:
    """|theta0_a|^2 of one architecture (blocks' middle term; every path of `arch` alive)."""
    from jaxnas.spaces.nb201.angle import PATH_EDGES
    cells = np.asarray(blocks.cells).sum(0)  # [6, 5, 3]
    mult = PATH_EDGES.sum(0)  # all paths alive: how many paths hold each edge
    return float(blocks.fixed[1]) + float(sum(mult[e] * cells[e, arch[e], 1] for e in range(6)))


def part2(a, runs) -> list[dict]:
    from jaxnas.cli import main
    rows = []
    for method in ("rsps", "abs"):
        for seed in a.seeds:
            out = runs / f"{method}-s{seed}"
            if not (out / "result.json").exists():
                rc = main(["search", "--method", method, "--preset", "tiny", "--seed", str(seed), "--data",
                           str(DATA),
                           "--out", str(out), "--bench-table", str(TABLE), "--no-progress", "--overwrite",
                           f"max_per_class={a.max_per_class}", f"train.epochs={a.search_epochs}"])
                if rc:
                    raise SystemExit(f"search {method} seed {seed} failed with exit code {rc}")
            r = json.loads((out / "result.json").read_text())
            rows.append({"method": method, "seed": seed, "arch": r["arch"], "test_acc": r["bench"][C10],
                         "steps": r["steps"], "space_bench": r.get("space_bench"),
                         "wall_time_s": r["wall_time_s"]})
    return rows


def write_table(res) -> str:
    p1, p2 = res["part1"], res["part2"]
    lines = [(f"Supernet: SETN, C={p1['C']}, N={p1['N']}, {p1['epochs']} epochs, {res['max_per_class']} "
              f"CIFAR-10 images per class ({p1['supernet_seconds']:.0f} s). Kendall tau against NB201 "
              f"CIFAR-10 test accuracy; permutation p-values ({res['perms']} shuffles)."), "",
             "| score | architectures | Kendall tau | p |", "|---|---|---|---|"]
    for r in p1["taus_all"] + p1["taus_subset"]:
        lines.append(f"| {r['metric']} | {r['n']} | {r['kendall_tau']:+.3f} | {r['p_value']:.3g} |")
    lines += ["",
              ("One-shot drop of 20 of the 30 operators (>= 1 per edge). True rank 1 = the worst operator; "
                   "random dropping averages 15.5."), "",
              "| operator score | mean true rank of the dropped | NB201 optimum kept | size left | best acc "
              "left (%) |",
              "|---|---|---|---|---|"]
    for r in p1["drops"]:
        lines.append(f"| {r['metric']} | {r['dropped_true_rank']:.2f} | "
                     f"{'yes' if r['optimum_kept'] else 'no'} | {r['space_size']} | {r['best_acc_left']:.2f} "
                     "|")
    if not p2:
        return "\n".join(lines) + "\n"
    lines += ["", (f"Search at equal steps ({res['search_epochs']} epochs; ABS drops after half): NB201 "
                   "CIFAR-10 test accuracy of the architecture found."), "",
              "| method | seed | accuracy (%) | optimum kept | best acc left (%) | steps |",
              "|---|---|---|---|---|---|"]
    for r in p2:
        sb = r["space_bench"] or {}
        lines.append(f"| {r['method']} | {r['seed']} | {r['test_acc']:.2f} | "
                     f"{'-' if not sb else ('yes' if sb['optimum_kept'] else 'no')} | "
                     f"{sb.get('best_acc', float('nan')):.2f} | {r['steps']} |")
    for m in ("rsps", "abs"):
        accs = [r["test_acc"] for r in p2 if r["method"] == m]
        lines.append(f"\n{m}: {np.mean(accs):.2f} ± {np.std(accs):.2f} over {len(accs)} seeds")
    return "\n".join(lines) + "\n"


def plot(res, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    p1 = res["part1"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    ang = [r for r in p1["taus_all"] if r["metric"].startswith("angle")]
    ax1.plot(p1["kept_epochs"], [r["kendall_tau"] for r in ang], "o-", label="angle (all 15,625)")
    for r in p1["taus_all"]:
        if not r["metric"].startswith("angle"):
            ax1.axhline(r["kendall_tau"], ls="--", label=r["metric"],
                        color="C1" if "alpha" in r["metric"] else "C2")
    ax1.set(xlabel="epoch", ylabel="Kendall tau vs NB201 C10 test acc", title="ranking by epoch")
    ax1.legend(fontsize=8)
    names = [r["metric"] for r in p1["drops"]]
    ax2.barh(range(len(names)), [r["dropped_true_rank"] for r in p1["drops"]], color="C0")
    ax2.axvline(15.5, color="k", ls=":", label="random (15.5)")
    ax2.set_yticks(range(len(names)), names, fontsize=8)
    ax2.set(xlabel="mean true rank of the 20 dropped operators (lower is better)", title="one-shot drop")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", default="runs/abs")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--search-epochs", type=int, default=6)
    ap.add_argument("--max-per-class", type=int, default=500)
    ap.add_argument("--acc-archs", type=int, default=300)
    ap.add_argument("--perms", type=int, default=200)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--C", type=int, default=8)
    ap.add_argument("--N", type=int, default=1)
    ap.add_argument("--no-search", action="store_true", help="part 1 only")
    a = ap.parse_args()
    runs = pathlib.Path(a.runs)
    rng = np.random.default_rng(0)
    cached = runs / f"part1-C{a.C}-N{a.N}.json"  # part 1 is reused if only part 2 must run again
    if not cached.exists():
        runs.mkdir(parents=True, exist_ok=True)
        cached.write_text(json.dumps(part1(a, runs, rng), indent=2))
    res = {"max_per_class": a.max_per_class, "perms": a.perms, "search_epochs": a.search_epochs,
           "part1": json.loads(cached.read_text()), "part2": [] if a.no_search else part2(a, runs)}
    name = "" if (a.C, a.N) == (8, 1) else f"_C{a.C}_N{a.N}"
    (HERE / f"results{name}.json").write_text(json.dumps(res, indent=2))
    (HERE / f"table{name}.md").write_text(write_table(res))
    plot(res, HERE / f"abs{name}.png")
    print(write_table(res))


if __name__ == "__main__":
    main()
