"""Training-free metrics and their combination rules on NB201 (issue 21): correlations, calibrated
rules, search simulations.

Part A, the whole space (free, all 15,625): jaxnas's cost metrics (params, flops, layers from the
space's cost model) and, as a stand-in for jaxnas's NASWOT on the whole space, the NASWOT v1
reference scores shipped with the shared data (BayesWatch/nas-without-training
`results/arch_score_acc.pd`; jaxnas's NASWOT reproduces them on NASLib's 724-architecture subset,
experiments/proxy_fidelity). Rules: log-rank and z-score sums of those, with weights calibrated
(`jaxnas.proxies.combine.calibrate`) on `--calib` seeded architectures against their cifar10-valid
*validation* accuracy, never the test accuracies they are judged on.

Part B, jaxnas's own metrics (`--eval` seeded architectures + the calibration ones; `jaxnas score`
at the paper protocol: C=16, N=5, 128 CIFAR-10 training images, a fresh network per architecture):
naswot, das (+ its atomic metrics), az_expressivity / az_progressivity / az_trainability, zico and
the cost metrics; rules calibrated on the calibration set, judged on the evaluation set.

Reported: Spearman / Kendall tau against CIFAR-10 test accuracy (and CIFAR-100 / ImageNet16-120
test, transfer) with 1,000-resample bootstrap intervals on subsets; search simulations (N candidates
drawn 500 times, the best by the score, mean ± std NB201 CIFAR-10 test accuracy of the pick) at
N = 10 / 100 / 1000 on the whole space (part A) and N = 10 / 100 within the evaluation set (part B),
beside TE-NAS 93.90 ± 0.47 and NASI 93.55 ± 0.10 (their papers) and the wall time per architecture.

Writes results.json and table.md here; `jaxnas score` runs resume and are reused.
Usage: python experiments/zero_cost/run.py [--runs runs/zero_cost] [--calib 200] [--eval 360] [--no-part-b]
"""
from __future__ import annotations

import argparse
import csv
import json
import pathlib

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
SHARED = HERE.parents[2] / "shared" / "data"
TABLE = SHARED / "nb201" / "nats_tss_hp200_test_acc.csv"
NASWOT_V1 = SHARED / "nb201" / "naswot_v1_cifar10_arch_score_acc.csv"
DATA = SHARED / "cifar10-jpeg" / "cifar10-jpeg.tar.gz"
TARGETS = {"cifar10": "CIFAR10TestAccuracy200Epochs", "cifar100": "CIFAR100TestAccuracy200Epochs",
           "imagenet16": "ImageNetTestAccuracy200Epochs"}
PUBLISHED = {"TE-NAS (ICLR 2021)": "93.90 ± 0.47", "NASI (ICLR 2022)": "93.55 ± 0.10"}
EVAL_CHUNK = 120  # evaluation architectures per `jaxnas score` run
METRICS_B = "naswot,das,az_expressivity,az_progressivity,az_trainability,zico,params,flops,layers"


def search_picks(scores, truth, n, draws=500, seed=0) -> np.ndarray:
    """The truth of the best-scored of n random candidates, per draw; the draws depend only on
    (len(scores), n, draws, seed), so two scores' picks pair up draw by draw."""
    rng = np.random.default_rng(seed)
    s = np.nan_to_num(np.asarray(scores, np.float64), nan=-np.inf)
    return np.array([truth[idx[np.argmax(s[idx])]] for idx in (rng.choice(len(s), n, replace=False)
                                                               for _ in range(draws))])


def search_sim(scores, truth, n, draws=500, seed=0) -> tuple[float, float]:
    return mean_std(search_picks(scores, truth, n, draws, seed))


def mean_std(picks) -> tuple[float, float]:
    return float(np.mean(picks)), float(np.std(picks))


def paired_gain(picks, baseline_picks, boot=2000, seed=1) -> list[float]:
    """[mean, 2.5 %, 97.5 %] of the gain of `picks` over `baseline_picks` drawn on the same candidate
    sets (bootstrap over draws: the simulation's randomness, not the scoring seed's)."""
    d = picks - baseline_picks
    rng = np.random.default_rng(seed)
    means = [rng.choice(d, len(d)).mean() for _ in range(boot)]
    return [float(d.mean()), float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]


def correlations(scores, truth, boot=0, seed=0) -> dict:
    from jaxnas.bench import kendall_tau, spearman
    out = {"spearman": spearman(scores, truth), "kendall": kendall_tau(scores, truth)}
    if boot:
        rng = np.random.default_rng(seed)
        ks = []
        for _ in range(boot):
            idx = rng.integers(0, len(truth), len(truth))
            ks.append(kendall_tau(np.asarray(scores)[idx], np.asarray(truth)[idx]))
        out["kendall_95"] = [float(np.percentile(ks, 2.5)), float(np.percentile(ks, 97.5))]
    return out


def calibrated_rules(calib_scores, calib_valid, groups) -> dict:
    """{name: (Rule, calibration tau)} for each metric group, both rule kinds."""
    from jaxnas.proxies.combine import calibrate
    rules = {}
    for name, metrics in groups.items():
        for kind in ("logrank", "zscore"):
            rules[f"{name} [{kind}]"] = calibrate(calib_scores, calib_valid, metrics, kind)
    return rules


def part_a(every, truth, valid, calib_idx, naswot_v1) -> dict:
    import jax.numpy as jnp

    from jaxnas.proxies.combine import Rule
    from jaxnas.spaces import nb201
    cost = {k: np.asarray(v, np.float64) for k, v in nb201.SPACE.cost(jnp.asarray(every)).items()}
    convs = np.isin(every, (nb201.CONV1, nb201.CONV3)).sum(-1)
    scores = {"params": cost["params"], "flops": cost["flops"], "layers": (8 + 15 * convs).astype(np.float64)}
    scores["naswot_v1_ref"] = naswot_v1
    calib = {k: v[calib_idx] for k, v in scores.items()}
    rules = calibrated_rules(calib, valid[calib_idx], {"naswot_v1_ref + params": ("naswot_v1_ref", "params"),
                                                       "naswot_v1_ref + params + flops": ("naswot_v1_ref",
                                                                                          "params",
                                                                                          "flops")})
    rules["naswot_v1_ref + params [logrank, equal weights]"] = (Rule("logrank", ("naswot_v1_ref", "params"),
                                                                     (1.0, 1.0)),
                                                                 None)
    rows = {}
    for name, s in [*scores.items(), *((n, r(scores)) for n, (r, _) in rules.items())]:
        rows[name] = {"corr": {t: correlations(s, truth[t]) for t in truth},
                      "search": {n: search_sim(s, truth["cifar10"], n) for n in (10, 100, 1000)}}
        if name in rules:
            rows[name]["rule"] = rules[name][0].to_json()
            rows[name]["calibration_tau"] = rules[name][1]
    rows["random"] = {"search": {n: search_sim(np.random.default_rng(1).random(len(every)), truth["cifar10"],
                                               n)
                                 for n in (10, 100, 1000)}}
    return rows


def part_c(whole: pathlib.Path, truth, valid, calib_idx, naswot_v1) -> dict | None:
    """jaxnas's forward and cost metrics on the whole space (`jaxnas score --archs all`, the CPU plan
    of issue 21: no gradient metric), rules calibrated on `calib_idx` against validation accuracy.
    Uses the rows scored so far when the run is unfinished (`n` says how many)."""
    from jaxnas.proxies.combine import NAMED, Rule
    f = whole / "scores.csv"
    if not f.exists():
        return None
    rows = list(csv.DictReader(f.open()))
    idx = np.array([int(r["index"]) for r in rows])
    pos = {j: i for i, j in enumerate(idx)}
    ci = np.array([pos[j] for j in calib_idx if j in pos], int)
    if len(ci) < 10:  # too early in the run to calibrate anything
        return None
    scores = {k: np.array([float(r[k]) for r in rows]) for k in rows[0] if k not in ("index", "arch")}
    # das is da_min or da plus a multiple of log_nau (the rule's job); AZ-NAS's components from the psd
    # spectrum only (the reference ones differ where rounding made them -inf)
    metrics = [k for k in scores if k not in ("das", "az_expressivity", "az_progressivity")]
    groups = {"naswot + params": ("naswot", "params"),
              "AZ forward + flops": ("az_expressivity", "az_progressivity", "flops"),
              "AZ forward (psd) + flops": ("az_expressivity_psd", "az_progressivity_psd", "flops"),
              "naswot + AZ forward + params": ("naswot", "az_expressivity", "az_progressivity", "params"),
              "naswot + AZ forward (psd) + params": ("naswot", "az_expressivity_psd", "az_progressivity_psd",
                                                     "params"),
              "all forward metrics": tuple(metrics)}
    rules = calibrated_rules({k: v[ci] for k, v in scores.items()}, valid[idx[ci]], groups)
    rules["naswot_params (named rule, equal weights)"] = (NAMED["naswot_params"], None)
    rules["AZ forward + flops [logrank, equal weights]"] = (
        Rule("logrank", ("az_expressivity", "az_progressivity", "flops"), (1.0, 1.0, 1.0)), None)
    rules["AZ forward (psd) + flops [logrank, equal weights]"] = (
        Rule("logrank", ("az_expressivity_psd", "az_progressivity_psd", "flops"), (1.0, 1.0, 1.0)), None)
    t = {k: v[idx] for k, v in truth.items()}
    held_out = np.setdiff1d(np.arange(len(idx)), ci)  # the same figures without the calibration architectures
    out = {"n": len(idx), "calib_n": len(ci), "rows": {}}
    out["naswot_vs_reference_v1"] = correlations(scores["naswot"], naswot_v1[idx])
    summary = whole / "summary.json"
    if summary.exists():
        out["archs_per_s"] = json.loads(summary.read_text())["archs_per_s"]
    ns = [n for n in (10, 100, 1000) if n <= len(idx) // 2]
    params_picks = {n: search_picks(scores["params"], t["cifar10"], n) for n in ns}
    for name, s in [*scores.items(), *((n, r(scores)) for n, (r, _) in rules.items())]:
        picks = {n: search_picks(s, t["cifar10"], n) for n in ns}
        row = out["rows"][name] = {"corr": {k: correlations(s, v) for k, v in t.items()},
                                   "corr_held_out": correlations(s[held_out], t["cifar10"][held_out]),
                                   "search": {n: mean_std(p) for n, p in picks.items()}}
        if name != "params":
            row["gain_over_params"] = {n: paired_gain(picks[n], params_picks[n]) for n in ns if n >= 100}
        if name in rules:
            row["rule"], row["calibration_tau"] = rules[name][0].to_json(), rules[name][1]
    return out


def load_naswot_v1(every) -> np.ndarray:
    """The reference's NASWOT v1 score of every architecture, in `every`'s order."""
    from jaxnas.spaces import nb201
    ref = list(csv.DictReader(NASWOT_V1.open()))
    assert [r["cellstr"] for r in ref] == [nb201.to_string(x) for x in every]
    return np.array([float(r["score"]) for r in ref])


def score_run(out: pathlib.Path, arch_file: pathlib.Path) -> list[dict]:
    from jaxnas.cli import main
    if not (out / "summary.json").exists():
        rc = main(["score", "--proxy", METRICS_B, "--archs", str(arch_file), "--out", str(out), "--seed", "0",
                   "--data", str(DATA), "--no-progress"])
        if rc:
            raise SystemExit(f"jaxnas score failed ({rc}) for {out}")
    rows = list(csv.DictReader((out / "scores.csv").open()))
    # one row per architecture (two processes once wrote to one run directory here; their rows for an
    # architecture are identical, since a score depends only on (seed, architecture, batch))
    first = {}
    for r in rows:
        first.setdefault(r["arch"], r)
    return list(first.values())


def part_b(a, every, truth, valid, calib_idx, eval_idx) -> dict:
    from jaxnas.proxies.combine import NAMED
    from jaxnas.spaces import nb201
    runs = pathlib.Path(a.runs)
    runs.mkdir(parents=True, exist_ok=True)
    out = {}
    got = {}
    # the evaluation set is scored in runs of EVAL_CHUNK architectures ("eval", "eval-120", ...: named by
    # their offset), so a larger --eval adds runs and keeps the finished ones
    chunks = [("calib", calib_idx)] + [("eval" if k == 0 else f"eval-{k}",
                                        np.sort(eval_idx[k:k + EVAL_CHUNK]))
                                       for k in range(0, len(eval_idx), EVAL_CHUNK)]
    for name, idx in chunks:
        f = runs / f"{name}_archs.txt"
        f.write_text("".join(nb201.to_string(every[i]) + "\n" for i in idx))
        rows = score_run(runs / name, f)
        summary = json.loads((runs / name / "summary.json").read_text())
        part = {k: np.array([float(r[k]) for r in rows]) for k in rows[0] if k not in ("index", "arch")}
        part["_index"] = np.array([int(r["index"]) for r in rows])
        key = "calib" if name == "calib" else "eval"
        got[key] = part if key not in got else {k: np.concatenate([got[key][k], part[k]]) for k in part}
        out.setdefault(f"{key}_archs_per_s", summary["archs_per_s"])
    metrics = [k for k in got["eval"] if not k.startswith("_")]
    groups = {"naswot + params": ("naswot", "params"),
              "AZ-NAS components + flops": ("az_expressivity", "az_progressivity", "az_trainability",
                                            "flops"),
              "all metrics": tuple(metrics)}
    ci, ei = got["calib"]["_index"], got["eval"]["_index"]
    rules = calibrated_rules({k: got["calib"][k] for k in metrics}, valid[ci], groups)
    rules["aznas (reference rule, equal weights)"] = (NAMED["aznas"], None)
    ev = {k: got["eval"][k] for k in metrics}
    t_eval = {t: v[ei] for t, v in truth.items()}
    rows = {}
    for name, s in [*ev.items(), *((n, r(ev)) for n, (r, _) in rules.items())]:
        rows[name] = {"corr": {t: correlations(s, t_eval[t],
                                               boot=1000 if t == "cifar10" else 0) for t in t_eval},
                      "search": {n: search_sim(s, t_eval["cifar10"], n) for n in (10,
                                                                                  100) if n <= len(ei) // 2}}
        if name in rules:
            rows[name]["rule"], rows[name]["calibration_tau"] = rules[name][0].to_json(), rules[name][1]
    out["rows"] = rows
    out["eval_n"], out["calib_n"] = len(ei), len(ci)
    return out


def rule_lines(rows: dict) -> list[str]:
    """One line per rule row: its weights and calibration tau."""
    return [f"- {name}: weights {dict(zip(r['rule']['metrics'], r['rule']['weights']))}"
            + (f", calibration tau {r['calibration_tau']:.3f}" if r["calibration_tau"] is not None else "")
            for name, r in rows.items() if "rule" in r]


def fmt_search(s: dict) -> str:
    return " / ".join(f"{m:.2f} ± {sd:.2f}" for m, sd in s.values())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", default="runs/zero_cost")
    ap.add_argument("--calib", type=int, default=200)
    ap.add_argument("--eval", type=int, default=360)
    ap.add_argument("--no-part-b", action="store_true")
    ap.add_argument("--whole", default=None,
                    help="part C's `jaxnas score --archs all` run (default RUNS/all_fwd)")
    ap.add_argument("--calib-whole", type=int, default=200, help="part C's calibration architectures")
    a = ap.parse_args()
    from jaxnas.bench import load_table
    from jaxnas.spaces import nb201
    every = nb201.enumerate_all()
    table = load_table(TABLE)
    truth = {t: table.values(every, c) for t, c in TARGETS.items()}
    valid = load_table(NASWOT_V1).values(every, "valid_top1")
    perm = np.random.default_rng(2026).permutation(len(every))
    calib_idx, eval_idx = np.sort(perm[:a.calib]), perm[a.calib:a.calib + a.eval]  # eval: sorted per chunk
    naswot_v1 = load_naswot_v1(every)
    results = {"part_a": part_a(every, truth, valid, calib_idx, naswot_v1), "published_search": PUBLISHED}
    part_c_run = pathlib.Path(a.whole or pathlib.Path(a.runs) / "all_fwd")
    results["part_c"] = part_c(part_c_run, truth, valid, np.sort(perm[:a.calib_whole]), naswot_v1)
    if not a.no_part_b:
        results["part_b"] = part_b(a, every, truth, valid, calib_idx, eval_idx)
    (HERE / "results.json").write_text(json.dumps(results, indent=2))

    lines = ["## Part A: all 15,625 (cost metrics from jaxnas's cost model; NASWOT = the reference's v1 "
             "scores)", "",
             ("| score | Spearman / Kendall, CIFAR-10 | CIFAR-100 | ImageNet16-120 | search N = 10 / 100 / "
             "1000 (CIFAR-10 test of the pick) |"), "|---|---|---|---|---|"]
    for name, r in results["part_a"].items():
        if "corr" not in r:
            lines.append(f"| {name} | | | | {fmt_search(r['search'])} |")
            continue
        c = r["corr"]
        lines.append(f"| {name} | " + " | ".join(f"{c[t]['spearman']:.3f} / {c[t]['kendall']:.3f}"
                                                             for t in TARGETS)
                     + f" | {fmt_search(r['search'])} |")
    lines += ["", "Published training-free searches on NB201 CIFAR-10: "
              + "; ".join(f"{k} {v}" for k, v in PUBLISHED.items()) + ".", ""]
    lines += rule_lines(results["part_a"])
    if "part_b" in results:
        b = results["part_b"]
        lines += ["",
                  (f"## Part B: jaxnas's metrics on {b['eval_n']} seeded architectures (rules calibrated on "
                  f"{b['calib_n']} others against cifar10-valid validation accuracy); "
                  f"{b['eval_archs_per_s']:.2f} architectures/s on this machine"), "",
                  ("| score | Spearman / Kendall (95% CI), CIFAR-10 | CIFAR-100 | ImageNet16-120 | search "
                  f"within the set, N = {' / '.join(map(str, next(iter(b['rows'].values()))['search']))} |"),
                  "|---|---|---|---|---|"]
        for name, r in b["rows"].items():
            c = r["corr"]
            ci = c["cifar10"]["kendall_95"]
            lines.append(f"| {name} | {c['cifar10']['spearman']:.3f} / {c['cifar10']['kendall']:.3f} "
                         f"({ci[0]:.3f}–{ci[1]:.3f}) | " + " | ".join(
                             f"{c[t]['spearman']:.3f} / {c[t]['kendall']:.3f}" for t in ("cifar100",
                                                                                         "imagenet16"))
                         + f" | {fmt_search(r['search'])} |")
        lines.append("")
        lines += rule_lines(b["rows"])
    if results["part_c"]:
        c = results["part_c"]
        speed = f"; {c['archs_per_s']:.2f} architectures/s on this machine" if "archs_per_s" in c else ""
        lines += ["",
                  (f"## Part C: jaxnas's forward and cost metrics on {c['n']:,} architectures (`jaxnas score "
                       f"--archs all`{speed}); rules calibrated on {c['calib_n']} seeded ones against "
                       "cifar10-valid validation accuracy"), "",
                  (f"jaxnas's NASWOT against the reference's v1 scores: Spearman "
                   f"{c['naswot_vs_reference_v1']['spearman']:.3f} / Kendall "
                   f"{c['naswot_vs_reference_v1']['kendall']:.3f}."),
                  "",
                  ("| score | Spearman / Kendall, CIFAR-10 | without the calibration set | CIFAR-100 | "
                   "ImageNet16-120 | search N = "
                   f"{' / '.join(map(str, next(iter(c['rows'].values()))['search']))} | gain over params on "
                   "the same draws, N = 100 / 1000 [95 % interval] |"),
                  "|---|---|---|---|---|---|---|"]
        for name, r in c["rows"].items():
            k, h = r["corr"], r["corr_held_out"]
            lines.append(f"| {name} | " + f"{k['cifar10']['spearman']:.3f} / {k['cifar10']['kendall']:.3f} | "
                         f"{h['spearman']:.3f} / {h['kendall']:.3f} | "
                         + " | ".join(f"{k[t]['spearman']:.3f} / {k[t]['kendall']:.3f}"
                                      for t in ("cifar100", "imagenet16"))
                         + f" | {fmt_search(r['search'])} | "
                         + " / ".join(f"{g:+.3f} [{lo:+.3f}, {hi:+.3f}]" for g, lo,
                                      hi in r.get("gain_over_params", {}).values())
                         + " |")
        lines.append("")
        lines += rule_lines(c["rows"])
    (HERE / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
