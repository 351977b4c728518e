"""Other readings of DAS's "distinguishing ability": does any, recombined with log NAU, rank NB201 better than
NASWOT?

jaxnas's DA is log|S| of the summed, normalised code kernel (jaxnas/proxies/activation.py), and on
NB201 no weighting of it against log NAU beats NASWOT (run.py, step 5). The DAS paper's own
definition could not be read here (only the abstract of arXiv 2212.12132 is reachable), so this
tries other natural measures of how well the binary activation codes of a batch tell its images
apart, each from the same forward pass of the same fresh network as `jaxnas score`:

  logdet       log|S|, S = K_H / N_A (jaxnas's DA; NASWOT = B log N_A + logdet)
  layer_mean   mean over ReLU inputs of log|S_l| (each layer's own kernel, not dominated by the widest)
  layer_sum    the same summed (a layer read by k conv edges counts k times, as in K_H)
  erank        log of the effective rank of S (exp of the entropy of its eigenvalues / B)
  mean_dist    log of the mean normalised Hamming distance between two images' codes
  min_dist     log of the smallest such distance (the two images the network confuses most)

Protocol, as for DAS's weight in run.py: each variant v is combined as v + w * log NAU, w chosen
on the calibration set (200 seeded architectures, against cifar10-valid *validation* accuracy) from
a grid that includes 0 (v alone) and very large w (log NAU alone); the variant to keep is the one
with the best calibration Kendall tau. Each rule is then judged on NASLib's 724 subset (and, with
`--all`, on all 15,625) against CIFAR-10 test accuracy, with a paired bootstrap (1,000 resamples
of the architectures; 200 for all 15,625) of its Kendall tau minus NASWOT's, and a search
simulation (best of N = 10 / 100 candidates, 500 draws). The one kept, min_dist, is jaxnas's
`das_da=min_dist`: B * log(min distance) + das_weight * B * log NAU ranks as v + w log NAU, and
das_weight 1.33 is this w (10^0.125) rounded. Writes da_variants.json and da_variants.md here.

Usage: JAXNAS_DATA=<cifar10-jpeg.tar.gz> python experiments/proxy_fidelity/da_variants.py \
       [--runs runs/fidelity/da_variants] [--all]
"""
from __future__ import annotations

import argparse
import csv
import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
from run import HERE, TABLE, VALID

VARIANTS = ("logdet", "layer_mean", "layer_sum", "erank", "mean_dist", "min_dist")
WEIGHTS = np.concatenate([[0.0], np.logspace(-2, 5, 57)])  # w in v + w * log NAU; 1e5: log NAU alone
BOOTSTRAP = 1000


def code_statistics(graphdef, params, stats, arch, images):
    """The variants' raw inputs for one architecture: summed kernel and units, per-layer log-dets."""
    from jaxnas.nn import functional
    from jaxnas.proxies.activation import agreement_matrix
    from jaxnas.spaces.arch import Choice
    b = images.shape[0]

    def tap(x, count):
        d = x.size // b
        agree = agreement_matrix(x.reshape(b, -1) > 0)
        logdet = jnp.linalg.slogdet(agree / d)[1]
        live = count > 0
        zero = jnp.zeros((b, b), jnp.float32)
        return {"kernel": jnp.where(live, count * agree, zero), "units": count * jnp.float32(d),
                "layer_logdet": jnp.where(live, count * logdet, 0.0), "layers": jnp.float32(count)}

    (_, t), _ = functional.apply(graphdef, params, stats, images, Choice(arch), train=True, tap=tap,
                                 single_path_impl="switch", scan_cells=True, prune="zero")
    s = t["kernel"] / t["units"]
    eig = jnp.clip(jnp.linalg.eigvalsh(s), 0.0, None)
    p = eig / jnp.sum(eig)
    dist = 1.0 - s + jnp.eye(b) * 2.0  # the diagonal out of the minimum
    return {"log_nau": jnp.log(t["units"]), "logdet": jnp.linalg.slogdet(s)[1],
            "layer_mean": t["layer_logdet"] / t["layers"], "layer_sum": t["layer_logdet"],
            "erank": -jnp.sum(jnp.where(p > 0, p * jnp.log(p), 0.0)),
            "mean_dist": jnp.log((jnp.sum(1.0 - s)) / (b * (b - 1))), "min_dist": jnp.log(jnp.min(dist))}


def score_set(path: pathlib.Path, archs, images) -> list[dict]:
    """One row per architecture (resumes after the last written row of `path`)."""
    from jaxnas.proxies.scoring import ProxyScorer
    from jaxnas.report import progress_bar
    from jaxnas.spaces import nb201
    rows = _read(path) if path.exists() else []
    scorer = ProxyScorer(["naswot"], seed=0)  # the weights `jaxnas score --seed 0` gives each candidate
    fn = jax.jit(lambda p, s, a: code_statistics(scorer.graphdef, p, s, a, images))
    bar = progress_bar(len(archs), len(rows), True, path.stem, unit="arch")
    with open(path, "a", newline="") as f:
        w = csv.writer(f)
        if not rows:
            w.writerow(("arch", "log_nau") + VARIANTS)
        for a in archs[len(rows):]:
            out = jax.device_get(fn(*scorer.candidate_weights(a), jnp.asarray(a, jnp.int32)))
            w.writerow([nb201.to_string(a)] + [repr(float(out[k])) for k in ("log_nau",) + VARIANTS])
            f.flush()
            bar.update(1)
    bar.close()
    return _read(path)


def _read(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _col(rows, k):
    return np.array([float(r[k]) for r in rows])


def _tau(s, t):
    from jaxnas.bench import rank_summary
    return rank_summary(s, t)["kendall_tau"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", default="runs/fidelity/da_variants")
    ap.add_argument("--all", action="store_true", help="also score all 15,625 (about 1.5 h on 2 CPU cores)")
    a = ap.parse_args()
    from naslib_subset import load as load_naslib

    from jaxnas import data as data_lib
    from jaxnas.bench import load_table
    from jaxnas.config import Config
    from jaxnas.proxies.run import select_archs
    from jaxnas.proxies.scoring import proxy_batches
    from jaxnas.spaces import nb201
    runs = pathlib.Path(a.runs)
    runs.mkdir(parents=True, exist_ok=True)
    cfg = Config(seed=0)
    (x, _), _ = proxy_batches(data_lib.load(cfg.data), cfg)
    images = jnp.asarray(x)
    with open(VALID) as f:
        valid = {r["cellstr"]: float(r["valid_top1"]) for r in csv.DictReader(f)}
    cal = score_set(runs / "calibration.csv", select_archs("200", 0), images)
    sub = score_set(runs / "subset.csv", np.stack([nb201.from_string(s) for s in load_naslib()]), images)
    full = score_set(runs / "all.csv", nb201.enumerate_all(), images) if a.all else None
    cal_t = np.array([valid[r["arch"]] for r in cal])
    sub_t = load_table(TABLE).values([r["arch"] for r in sub], "cifar10")
    b = images.shape[0]

    res = {"calibration_naswot_tau": _tau(_col(cal, "logdet") + b * _col(cal, "log_nau"), cal_t),
           "variants": {},
           "weights": {}, "sets": {}}
    for v in VARIANTS:  # each variant's weight, chosen on the calibration set only
        cal_tau = [_tau(_col(cal, v) + w * _col(cal, "log_nau"), cal_t) for w in WEIGHTS]
        res["weights"][v] = float(WEIGHTS[int(np.nanargmax(cal_tau))])
        res["variants"][v] = {"calibration_tau": float(np.nanmax(cal_tau))}
    sets = [("subset", sub, sub_t, BOOTSTRAP)]
    if full:
        sets.append(("all", full, load_table(TABLE).values([r["arch"] for r in full], "cifar10"),
                     BOOTSTRAP // 5))
    for name, rows, truth, n_boot in sets:
        res["sets"][name] = judge(rows, truth, res["weights"], b, n_boot)
        for v, r in res["sets"][name]["variants"].items():
            print(name, v, json.dumps(r["tau_minus_naswot"]), flush=True)
    (HERE / "da_variants.json").write_text(json.dumps(res, indent=2))
    _markdown(res)


def judge(rows, truth, weights, b, n_boot, seed=0):
    """Each variant alone and combined (its calibrated weight) against `truth`, the paired bootstrap
    of its Kendall tau minus NASWOT's, the oracle weight, and a search simulation (best of N)."""
    from run import search_sim

    from jaxnas.bench import rank_summary
    naswot = _col(rows, "logdet") + b * _col(rows, "log_nau")
    finite = np.flatnonzero(np.isfinite(naswot))
    rng = np.random.default_rng(seed)
    boots = [rng.choice(finite, finite.size) for _ in range(n_boot)]
    out = {"n": len(rows), "naswot": rank_summary(naswot, truth), "variants": {},
           "search": {f"NASWOT N={n}": search_sim(naswot, truth, n) for n in (10, 100)}}
    for v, w in weights.items():
        s = _col(rows, v) + w * _col(rows, "log_nau")
        oracle = [_tau(_col(rows, v) + ww * _col(rows, "log_nau"), truth) for ww in WEIGHTS]
        diffs = np.array([_tau(s[i], truth[i]) - _tau(naswot[i], truth[i]) for i in boots])
        out["variants"][v] = {
            "alone": rank_summary(_col(rows, v), truth), "w": w, "combined": rank_summary(s, truth),
            "oracle_tau": float(np.nanmax(oracle)), "oracle_w": float(WEIGHTS[int(np.nanargmax(oracle))]),
            "tau_minus_naswot": {"mean": float(diffs.mean()), "n_boot": n_boot,
                                 "ci95": [float(np.percentile(diffs, 2.5)),
                                          float(np.percentile(diffs, 97.5))]}}
        out["search"].update({f"{v} N={n}": search_sim(s, truth, n) for n in (10, 100)})
    return out


def _markdown(res):
    lines = [(f"Calibration (200 seeded architectures, cifar10-valid validation accuracy): NASWOT Kendall "
              f"{res['calibration_naswot_tau']:.3f}; each variant's best v + w log NAU below."), ""]
    for name, r in res["sets"].items():
        n = r["naswot"]
        head = ("| DA variant | calibration Kendall | w | alone: Kendall / Spearman | v + w log NAU: Kendall "
                "/ Spearman | Kendall - NASWOT (95 % CI) | oracle Kendall (w) | best of 10 / of 100 |")
        lines += [(f"**{name}** ({r['n']} architectures, NB201 CIFAR-10 test accuracy; NASWOT Kendall / "
                   f"Spearman {n['kendall_tau']:.3f} / {n['spearman']:.3f})"), "", head,
                  "|---|---|---|---|---|---|---|---|"]
        for v, x in r["variants"].items():
            a, c, d = x["alone"], x["combined"], x["tau_minus_naswot"]
            s10, s100 = r["search"][f"{v} N=10"], r["search"][f"{v} N=100"]
            lines.append(f"| {v} | {res['variants'][v]['calibration_tau']:.3f} | {x['w']:.3g} | "
                         f"{a['kendall_tau']:.3f} / {a['spearman']:.3f} | {c['kendall_tau']:.3f} / "
                         f"{c['spearman']:.3f} | {d['mean']:+.3f} [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}] "
                         f"| {x['oracle_tau']:.3f} ({x['oracle_w']:.3g}) | {s10[0]:.2f} ± {s10[1]:.2f} / "
                         f"{s100[0]:.2f} ± {s100[1]:.2f} |")
        s10, s100 = r["search"]["NASWOT N=10"], r["search"]["NASWOT N=100"]
        lines += [(f"| NASWOT | {res['calibration_naswot_tau']:.3f} | | | {n['kendall_tau']:.3f} / "
                   f"{n['spearman']:.3f} | 0 | | {s10[0]:.2f} ± {s10[1]:.2f} / {s100[0]:.2f} ± {s100[1]:.2f} "
                   "|"), ""]
    (HERE / "da_variants.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
