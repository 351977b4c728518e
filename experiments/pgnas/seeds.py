"""PGNAS on NB201 over 3 seeds, 1.5x as long as run.py, next to RSPS at equal steps and the #params proxy.

Per seed: one `jaxnas search --method pgnas` run (C=8, N=1, l^2 = 50, `--epochs` epochs on
`--max-per-class` CIFAR-10 images per class, `pgnas.genotype=ranked`, `--candidates` pairs from the
learned p and as many from the fixed rate) and one `jaxnas search --method rsps` run with the same
data, seed, epochs and held-out batch. Reported per seed and as mean ± std over seeds:
  - NB201 CIFAR-10 test accuracy of three picks: PGNAS's ranked genotype (single paths drawn from the
    candidates' kept ops, ranked with the shared weights), PGNAS's projected genotype (the paper-style
    mapping of the best pair) and RSPS's pick among `eval.select_num` uniformly sampled paths;
  - the candidate populations (mean, std) of PGNAS and fixed-rate dropout, and best-of-C;
  - Kendall tau of the posterior log keep-probability against NB201 over all 15,625.
The free baseline: the expected NB201 accuracy of the architecture with the most parameters among K
uniformly drawn ones (K = RSPS's candidates and K = PGNAS's ranked genotypes; 2,000 draws), and
Kendall tau of #params on all 15,625. An exact permutation test (all 20 splits of 3 + 3 seeds)
compares the ranked PGNAS pick with RSPS.

Writes results_seeds.json and table_seeds.md here; finished runs are reused.
Usage: python experiments/pgnas/seeds.py [--runs runs/pgnas-seeds] [--epochs 15]
"""
from __future__ import annotations

import argparse
import json
import math
import pathlib
import sys

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]
from common import exact_permutation_p, params_pick  # noqa: E402  (found through sys.path above)
from run import C10, DATA, TABLE, best_of, posterior_tau  # noqa: E402


def search(method, seed, a, runs: pathlib.Path, extra=()) -> dict:
    from jaxnas.cli import main
    out = runs / f"{method}-seed{seed}"
    if not (out / "result.json").exists():
        rc = main(["search", "--method", method, "--preset", "tiny", "--seed", str(seed), "--data", str(DATA),
                   "--out", str(out), "--bench-table", str(TABLE), "--no-progress", "--overwrite",
                   f"max_per_class={a.max_per_class}", f"train.epochs={a.epochs}",
                   f"eval.batch_size={a.eval_images}",
                   *extra])
        if rc:
            raise SystemExit(f"{method} seed {seed} failed with exit code {rc}")
    return json.loads((out / "result.json").read_text())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", default="runs/pgnas-seeds")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--max-per-class", type=int, default=500)
    ap.add_argument("--candidates", type=int, default=300)
    ap.add_argument("--eval-images", type=int, default=1000)
    ap.add_argument("--perms", type=int, default=200)
    a = ap.parse_args()
    import jax.numpy as jnp

    from jaxnas.bench import kendall_tau, load_table
    from jaxnas.spaces import nb201

    table = load_table(TABLE)
    every = nb201.enumerate_all()
    truth = table.values(every, C10)
    params = np.asarray(nb201.SPACE.cost(jnp.asarray(every))["params"], np.float64)

    def lookup(text):
        return float(table.lookup(text)[C10])

    rng = np.random.default_rng(0)
    runs = pathlib.Path(a.runs)
    rows = []
    for seed in a.seeds:
        pg = search("pgnas", seed, a, runs, (f"pgnas.candidates={a.candidates}", "pgnas.genotype=ranked"))
        rs = search("rsps", seed, a, runs)
        tau, p = posterior_tau(pg["drop_p"], truth, every, rng, a.perms)
        c, f = pg["candidates_acc"], pg["fixed_rate_acc"]
        rows.append({"seed": seed, "ranked": lookup(pg["arch"]), "projected": lookup(pg["projected_arch"]),
                     "rsps": lookup(rs["arch"]), "ranked_arch": pg["arch"],
                     "projected_arch": pg["projected_arch"],
                     "rsps_arch": rs["arch"], "ranked_genotypes": pg["ranked_genotypes"],
                     "rsps_candidates": len(rs["candidates"]), "mean_drop_p": f["p"],
                     "pgnas": {k: c[k] for k in ("mean", "std", "max")},
                     "fixed": {k: f[k] for k in ("mean", "std", "max")},
                     "best_of_pgnas": best_of(c["values"], (10, 50, 100, 300), rng),
                     "best_of_fixed": best_of(f["values"], (10, 50, 100, 300), rng),
                     "posterior_tau": round(tau, 4), "posterior_tau_p": p,
                     "wall_s": {"pgnas": pg["wall_time_s"], "rsps": rs["wall_time_s"]}, "steps": pg["steps"]})
    k_rsps, k_ranked = rows[0]["rsps_candidates"], int(np.mean([r["ranked_genotypes"] for r in rows]))
    free = {"params_tau": round(kendall_tau(params, truth), 4),
            f"params_pick_{k_rsps}": params_pick(params, truth, k_rsps, rng),
            f"params_pick_{k_ranked}": params_pick(params, truth, k_ranked, rng),
            "random_mean": float(truth.mean())}
    summary = {key: (float(np.mean([r[key] for r in rows])), float(np.std([r[key] for r in rows])))
               for key in ("ranked", "projected", "rsps", "posterior_tau")}
    summary["ranked_vs_rsps_p"] = exact_permutation_p(np.array([r["ranked"] for r in rows]),
                                                      np.array([r["rsps"] for r in rows]))
    (HERE / "results_seeds.json").write_text(json.dumps({"rows": rows, "free": free, "summary": summary},
                                                        indent=2))

    lines = [(f"C=8, N=1, {a.epochs} epochs ({rows[0]['steps']} steps) on {a.max_per_class} CIFAR-10 images "
             f"per class, {a.candidates} PGNAS candidates, held-out batch {a.eval_images} images of the "
             "search split; NB201 CIFAR-10 test accuracy (%) of each pick."), "",
             ("| seed | PGNAS ranked genotype | PGNAS projected genotype | RSPS (equal steps) | PGNAS "
              "candidates mean ± std | fixed-rate mean ± std | best-of-300 PGNAS / fixed | posterior tau "
              "(p) |"),
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['seed']} | {r['ranked']:.2f} | {r['projected']:.2f} | {r['rsps']:.2f} | "
                     f"{r['pgnas']['mean']:.2f} ± {r['pgnas']['std']:.2f} | {r['fixed']['mean']:.2f} ± "
                     f"{r['fixed']['std']:.2f} | {r['best_of_pgnas'].get(300, float('nan')):.2f} / "
                     f"{r['best_of_fixed'].get(300, float('nan')):.2f} | {r['posterior_tau']:+.3f} "
                     f"({r['posterior_tau_p']:.3g}) |")
    s = summary
    lines += [(f"| **mean ± std** | **{s['ranked'][0]:.2f} ± {s['ranked'][1]:.2f}** | "
              f"{s['projected'][0]:.2f} ± {s['projected'][1]:.2f} | {s['rsps'][0]:.2f} ± {s['rsps'][1]:.2f} "
              f"| | | | {s['posterior_tau'][0]:+.3f} |"), "",
              (f"Ranked PGNAS vs RSPS: exact permutation p = {s['ranked_vs_rsps_p']:.2f} ({len(rows)} + "
               f"{len(rows)} seeds; the smallest possible p is "
               f"{2 / math.comb(2 * len(rows), len(rows)):.2f})."),
              (f"Free baseline (no training): #params Kendall tau {free['params_tau']:+.3f} on all 15,625; "
              f"the most-parameter architecture among {k_rsps} uniform draws averages "
              f"{free[f'params_pick_{k_rsps}']:.2f}, among {k_ranked} {free[f'params_pick_{k_ranked}']:.2f}; "
              f"a uniform architecture averages {free['random_mean']:.2f}.")]
    (HERE / "table_seeds.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
