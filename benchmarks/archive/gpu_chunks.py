"""On a GPU: seconds for SETN's selection (100 candidates x 512 images) and NASWOT (C=16, N=5,
batch 128) per candidate-chunk size, jaxnas only (one-off, BENCHMARKS.md section 8). XLA_FLAGS
from the environment apply, so run it once per flag setting.

Usage: python benchmarks/archive/gpu_chunks.py [--what select,naswot] [--chunks 1,4,16,64]
"""
from __future__ import annotations

import argparse
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxnas.config import PRESETS
from jaxnas.methods.base import EvalContext
from jaxnas.methods.setn import SETN
from jaxnas.proxies import ProxyScorer
from jaxnas.spaces import nb201


def best_of(fn, reps=3):
    fn()  # compile / warm-up
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--what", default="select,naswot")
    ap.add_argument("--chunks", default="1,4,16,64")
    ap.add_argument("--naswot-archs", type=int, default=256)
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    res = {"xla_flags": os.environ.get("XLA_FLAGS", ""), "device": jax.devices()[0].device_kind}
    for chunk in map(int, a.chunks.split(",")):
        if "select" in a.what:
            cfg = PRESETS["paper"].replace(method="setn").set(
                {"eval.select_num": 100, "eval.batch_size": 512, "eval.chunk_size": chunk})
            method = SETN(cfg, 10)
            state = method.init_state()
            archs = nb201.from_index(rng.choice(nb201.NUM_ARCHS, 100, replace=False))
            x = rng.standard_normal((512, 32, 32, 3)).astype(np.float32)
            ctx = EvalContext(jnp.asarray(x), jnp.asarray(rng.integers(0, 10, 512).astype(np.int32)))
            res[f"select_chunk{chunk}_s"] = best_of(lambda: method.pick_best(state, archs, ctx))
        if "naswot" in a.what:
            scorer = ProxyScorer("naswot", C=16, N=5, seed=0, chunk_size=chunk)
            archs = nb201.from_index(rng.choice(nb201.NUM_ARCHS, a.naswot_archs, replace=False))
            x = rng.standard_normal((128, 32, 32, 3)).astype(np.float32)
            y = rng.integers(0, 10, 128).astype(np.int32)
            res[f"naswot_chunk{chunk}_archs_per_s"] = a.naswot_archs / best_of(lambda: scorer(archs, x, y), reps=2)
        print(json.dumps(res), flush=True)


if __name__ == "__main__":
    main()
