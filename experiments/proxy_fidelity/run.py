"""Fidelity of NASWOT / DAS (and the other proxies) on NB201 CIFAR-10; writes RESULTS.md and plots.

Steps (each `jaxnas score` run resumes if killed; rerunning this script reuses finished runs):
  1. calibration: `--archs 200` (a seeded sample); DAS's weight w in DA + w * B * log(NAU) is chosen there
     to maximise Kendall tau against NB201 cifar10-valid *validation* accuracy (never the test accuracy
     it is judged on);
  2. NASLib's 724-architecture subset: NASWOT + DAS atomic metrics (+ the gradient proxies on
     `--grad-subset` of them, which cost several forward/backward passes each);
  3. all 15,625 architectures (`--full`), when that run has finished;
  4. search simulation: N=10 / N=100 candidates drawn 500 times from a scored set, best by score,
     NB201 test accuracy of the pick (mean +- std);
  5. with the whole space: an *oracle* sweep of DAS combination rules judged on the test accuracy
     itself (linear weights, a mix of ranks) -- not a way to choose a rule, only the most any rule
     of that family could gain over NASWOT on NB201.

Usage: python experiments/proxy_fidelity/run.py [--runs runs/fidelity] [--full] [--grad-subset 100]
"""
from __future__ import annotations

import argparse
import csv
import json
import pathlib
import sys

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from naslib_subset import SHARED  # noqa: E402  (found through the sys.path entry above)
from naslib_subset import load as load_naslib  # noqa: E402

TABLE = SHARED / "nats_tss_hp200_test_acc.csv"
VALID = SHARED / "naswot_v1_cifar10_arch_score_acc.csv"
B = 128


def score(out: pathlib.Path, archs: str, proxy: str, extra=()) -> list[dict]:
    from jaxnas.cli import main
    if not (out / "summary.json").exists():
        rc = main(["score", "--proxy", proxy, "--archs", archs, "--out", str(out), "--bench-table",
                   str(TABLE),
                   "--seed", "0", *extra])
        if rc:
            raise SystemExit(f"jaxnas score failed ({rc}) for {out}")
    return list(csv.DictReader(open(out / "scores.csv")))


def col(rows, name):
    return np.array([float(r[name]) for r in rows])


def das(rows, w):
    return col(rows, "da") + w * B * col(rows, "log_nau")


def search_sim(scores, truth, n, runs=500, seed=0):
    rng = np.random.default_rng(seed)
    picks = []
    s = np.nan_to_num(scores, nan=-np.inf)
    for _ in range(runs):
        idx = rng.choice(len(s), n, replace=False)
        picks.append(truth[idx[np.argmax(s[idx])]])
    return float(np.mean(picks)), float(np.std(picks))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", default="runs/fidelity")
    ap.add_argument("--full", action="store_true",
                    help="also use the all-15,625 run (RUNS/all, scored here if needed)")
    ap.add_argument("--full-run", help="a finished all-15,625 `jaxnas score` run to read instead of RUNS/all "
                                       "(e.g. one scored on a GPU)")
    ap.add_argument("--grad-subset", type=int, default=0, help="score the gradient proxies on this many")
    a = ap.parse_args()
    from jaxnas.bench import load_table, rank_summary
    runs = pathlib.Path(a.runs)
    runs.mkdir(parents=True, exist_ok=True)
    table = load_table(TABLE)
    valid = {r["cellstr"]: float(r["valid_top1"]) for r in csv.DictReader(open(VALID))}

    # 1. calibration of DAS's weight on validation accuracy
    cal = score(runs / "calibration", "200", "naswot")
    cal_truth = np.array([valid[r["arch"]] for r in cal])
    grid = np.round(np.arange(0.0, 2.001, 0.05), 3)
    cal_tau = [rank_summary(das(cal, w), cal_truth)["kendall_tau"] for w in grid]
    w_star = float(grid[int(np.nanargmax(cal_tau))])

    # 2. NASLib's subset
    naslib = load_naslib()
    subset_file = runs / "naslib_subset.txt"
    subset_file.write_text("".join(s + "\n" for s in naslib))
    sub = score(runs / "naslib_subset", str(subset_file), "naswot")
    sub_truth = table.values([r["arch"] for r in sub], "cifar10")
    rows = {"NASWOT (jaxnas)": col(sub, "naswot"), f"DAS (jaxnas, w={w_star})": das(sub, w_star),
            "DA alone": col(sub, "da"), "log NAU alone": col(sub, "log_nau")}
    for k in ("nwot", "synflow", "snip", "grad_norm", "jacov"):
        rows[f"NASLib {k} (reference)"] = np.array([naslib[r["arch"]][k] for r in sub])
    table_rows = [(name, rank_summary(v, sub_truth)) for name, v in rows.items()]
    if a.grad_subset:
        g = score(runs / "naslib_grad",
                  str(_first_lines(subset_file, runs / "grad_subset.txt", a.grad_subset)),
                  "synflow,snip,grad_norm,jacov")
        g_truth = table.values([r["arch"] for r in g], "cifar10")
        for name, c in (("synflow", "synflow"), ("snip", "snip"), ("grad_norm", "grad_norm"),
                        ("jacov", "jacov")):
            table_rows.append((f"{name} (jaxnas, first {a.grad_subset})", rank_summary(col(g, c), g_truth)))
            ref = np.array([naslib[r["arch"]][name] for r in g])
            table_rows.append((f"NASLib {name} (same {a.grad_subset})", rank_summary(ref, g_truth)))

    # 3. the whole space
    full = None
    full_dir = pathlib.Path(a.full_run) if a.full_run else runs / "all"
    if a.full or a.full_run:
        full = score(full_dir, "all", "naswot")
        if len(full) != 15625:
            raise SystemExit(f"the all-15,625 run holds {len(full)} rows")
        full_truth = table.values([r["arch"] for r in full], "cifar10")
        table_rows.append(("NASWOT (jaxnas), all 15,625", rank_summary(col(full, "naswot"), full_truth)))
        table_rows.append((f"DAS (w={w_star}), all 15,625", rank_summary(das(full, w_star), full_truth)))

    # 4. search simulation, on each scored pool
    sim_rows = []
    pools = [("NASLib's 724 subset", sub, sub_truth)] + ([("all 15,625", full, full_truth)] if full else [])
    for pool, rows_, truth in pools:
        for name, s in (("NASWOT", col(rows_, "naswot")), (f"DAS w={w_star}", das(rows_, w_star))):
            for n in (10, 100):
                sim_rows.append((pool, name, n, *search_sim(s, truth, n)))
        sim_rows.append((pool, "random architecture of the pool", 1, float(np.mean(truth)),
                         float(np.std(truth))))

    oracle = _oracle_sweep(full, full_truth) if full else None
    results = {"w_star": w_star, "oracle_sweep_all": oracle,
               "calibration_tau": dict(zip(map(float, grid), cal_tau)),
               "fidelity": {k: v for k, v in table_rows},
               "search": [dict(zip(("pool", "method", "N", "mean", "std"), r)) for r in sim_rows],
               "full_run": str(full_dir) if full else None}
    (HERE / "results.json").write_text(json.dumps(results, indent=2))
    _plots(sub, sub_truth, w_star, grid, cal_tau, (full, full_truth) if full else None)
    _markdown(results)


def _oracle_sweep(rows, truth):
    """Kendall tau vs the judged accuracy itself, over the finite scores, for DAS rule families."""
    from scipy.stats import rankdata  # average ranks: many architectures share a unit count

    from jaxnas.bench import kendall_tau
    da, log_nau, naswot = col(rows, "da"), col(rows, "log_nau"), col(rows, "naswot")
    ok = np.isfinite(naswot)

    def tau(s):
        return kendall_tau(s[ok], truth[ok])

    def ranks(v):
        return rankdata(v[ok]) / ok.sum()

    return {"n_finite": int(ok.sum()), "naswot": tau(naswot),
            "linear_w": {w: tau(da + w * B * log_nau) for w in (0.0, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0,
                                                                3.0, 5.0)},
            "rank_mix_a": {a: kendall_tau(a * ranks(da) + (1 - a) * ranks(log_nau), truth[ok])
                           for a in (0.25, 0.5, 0.75)}}


def _first_lines(src, dst, n):
    dst.write_text("".join(src.read_text().splitlines(keepends=True)[:n]))
    return dst


def _plots(sub, truth, w_star, grid, cal_tau, full=None):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(1, 4 if full else 3, figsize=(20 if full else 15, 4.2))
    if full:
        s, t = col(full[0], "naswot"), full[1]
        ok = np.isfinite(s)
        hb = ax[3].hexbin(s[ok], t[ok], gridsize=60, bins="log", mincnt=1, extent=(1050, 1700, 10, 95))
        fig.colorbar(hb, ax=ax[3], label="architectures")
        ax[3].set_xlabel("NASWOT score")
        ax[3].set_ylabel("NB201 CIFAR-10 test accuracy (%)")
        ax[3].set_title(f"NASWOT, all {ok.sum()} finite of {len(s)}")
    for a, (name, s) in zip(ax[:2],
                            (("NASWOT", col(sub, "naswot")), (f"DAS (w={w_star})", das(sub, w_star)))):
        ok = np.isfinite(s)
        a.scatter(s[ok], truth[ok], s=5, alpha=0.5)
        a.set_xlabel(f"{name} score")
        a.set_ylabel("NB201 CIFAR-10 test accuracy (%)")
        a.set_ylim(max(40, np.nanmin(truth) - 2), 95)
        a.set_title(f"{name}, NASLib's 724 archs")
    ax[2].plot(grid, cal_tau, marker=".")
    ax[2].axvline(w_star, color="k", ls="--", lw=1)
    ax[2].axvline(1.0, color="r", ls=":", lw=1, label="w=1 (NASWOT)")
    ax[2].set_xlabel("w in DA + w·B·log NAU")
    ax[2].set_ylabel("Kendall tau vs cifar10-valid acc.")
    ax[2].set_title("DAS weight on the calibration set (200 archs)")
    ax[2].legend()
    fig.tight_layout()
    fig.savefig(HERE / "fidelity.png", dpi=110)


def _markdown(res):
    lines = ["| score | n | Spearman | Kendall tau |", "|---|---|---|---|"]
    for name, r in res["fidelity"].items():
        lines.append(f"| {name} | {r['n']} | {r['spearman']:.3f} | {r['kendall_tau']:.3f} |")
    lines += ["", "Search simulation (500 runs per row): NB201 CIFAR-10 test accuracy of the pick", "",
              "| pool | method | N | mean | std |", "|---|---|---|---|---|"]
    for r in res["search"]:
        lines.append(f"| {r['pool']} | {r['method']} | {r['N']} | {r['mean']:.2f} | {r['std']:.2f} |")
    if res.get("oracle_sweep_all"):
        o = res["oracle_sweep_all"]
        title = (f"Oracle sweep over all {o['n_finite']} finite scores (Kendall tau against the test "
                 f"accuracy itself; NASWOT {o['naswot']:.4f})")
        lines += ["", title, "", "| rule | Kendall tau |", "|---|---|"]
        lines += [f"| DA + {w}·B·log NAU | {t:.4f} |" for w, t in o["linear_w"].items()]
        lines += [f"| {a}·rank(DA) + {1 - a}·rank(log NAU) | {t:.4f} |" for a, t in o["rank_mix_a"].items()]
    (HERE / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
