"""AZ-NAS's forward components (expressivity, progressivity) with NASWOT / DAS and the cost proxies:
eager host path (AZ-NAS through jaxnas.spaces.nb201.eager, as before issue 21's session 16) against
the traced program ProxyScorer now uses, on the same seeded NB201 architectures in one process.

Usage: python benchmarks/bench_az_forward.py [--archs 48] [--data PATH]   (BENCHMARKS.md section 12)
"""
from __future__ import annotations

import argparse
import functools
import pathlib
import time

import numpy as np

DATA = (pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpeg"
        / "cifar10-jpeg.tar.gz")
PROXIES = "naswot,das,az_expressivity,az_progressivity,params,flops,layers"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--archs", type=int, default=48)
    ap.add_argument("--data", default=str(DATA))
    a = ap.parse_args()
    from jaxnas import data as data_lib
    from jaxnas.proxies import aznas
    from jaxnas.proxies.scoring import ProxyScorer
    from jaxnas.spaces import nb201
    ds = data_lib.load(a.data)
    x = np.asarray(data_lib.normalize(ds.train_images[:128], ds.mean, ds.std))
    y = ds.train_labels[:128].astype(np.int32)
    archs = nb201.from_index(np.sort(np.random.default_rng(1).choice(nb201.NUM_ARCHS, a.archs + 16,
                                                                     replace=False)))
    traced = ProxyScorer(PROXIES, host_gradients=True)  # AZ-NAS without trainability: traced (now)
    eager = ProxyScorer(PROXIES, host_gradients=True)  # the previous routing: AZ-NAS on the host
    fn = next(f for f in traced._fns if getattr(f, "func", None) is aznas.az_scores)
    eager._fns = [f for f in traced._fns if f is not fn]
    eager._eager_fns = [functools.partial(aznas.eager_az_scores, space=eager.space, **fn.keywords)]
    eager.host = True
    results = {}
    for name, scorer, block in (("eager AZ-NAS", eager, 8), ("traced", traced, 16)):
        scorer(archs[:block], x, y)  # compile
        t = time.perf_counter()
        out = [scorer(archs[i:i + block], x, y) for i in range(16, len(archs), block)]
        results[name] = ((time.perf_counter() - t) / a.archs,
                         np.concatenate([o["az_expressivity"] for o in out]))
        print(f"{name}: {results[name][0]:.3f} s / architecture", flush=True)
    e, t = results["eager AZ-NAS"][1], results["traced"][1]
    fin = np.isfinite(e) & np.isfinite(t)
    print(f"speed-up x{results['eager AZ-NAS'][0] / results['traced'][0]:.2f}; az_expressivity max rel. "
          f"difference {np.max(np.abs(e[fin] - t[fin]) / np.abs(e[fin])):.1e} ({(~fin).sum()} not finite on "
          "one side)")


if __name__ == "__main__":
    main()
