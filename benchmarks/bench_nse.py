"""NSE's mobile supernet at the tiny size on CPU (issue 32, item 6), against a PyTorch twin of the same
multi-branch cell stack (tests/spaces/mobile_twin.py: the reference's layers, run as the reference
runs them: only the operators a step selects).

  step   jaxnas: NSE's weight step (every cell's K subset operators run, each gated by its
         Bernoulli(1/2) draw; forward, backward and SGD in one jitted program per round) and its
         architecture step (the pair estimator: forward, backward to alpha, Adam, cleaning);
         twin: forward and backward of the drawn operators only (no optimizer: favours the twin).
  score  candidates per second at a round end, BN recalibration included: jaxnas's Evaluator
         (`eval.bn=recal`: per candidate the statistics of `eval.recal_batches` training batches,
         then the held-out images; vmapped chunks, one program for every candidate); the twin one
         candidate at a time under no_grad (the recalibration timed as its training-mode forwards).
The weights are the supernet's at initialisation, the round's subset its first (random) one, the
inputs random images: speed only.

Usage: python benchmarks/bench_nse.py [--out benchmarks/results/nse_cpu.json] [--ops mb3t3,...]
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import torch
from common import machine_info, timed

from jaxnas import backend, config
from jaxnas.evaluate import Evaluator
from jaxnas.methods import nse_evolve as ev
from jaxnas.methods.nse import NSE
from jaxnas.spaces import get as get_space
from jaxnas.spaces.arch import Gates

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests" / "spaces"))
from mobile_twin import torch_tree, twin  # noqa: E402  (the test oracle, found above)


def median(xs) -> float:
    return float(np.median(xs))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--cands", type=int, default=8)
    ap.add_argument("--images", type=int, default=256)   # held-out images per candidate (tiny preset)
    ap.add_argument("--ops", default="", help="mobile.ops (default: the whole 27-operator pool)")
    ap.add_argument("--warm", type=int, default=8, help="host path: steps before timing (their compiles)")
    ap.add_argument("--impl", default="auto", help="mobile.impl: the weight step traced or on the host")
    ap.add_argument("--out")
    a = ap.parse_args()
    cfg = config.preset("tiny", "nse", "mobile").set({"eval.batch_size": a.images, "mobile.impl": a.impl})
    if a.ops:
        cfg = cfg.set({"mobile.ops": tuple(a.ops.split(","))})
    space = get_space("mobile").configure(cfg)
    method = NSE(cfg, space, 10)
    state = method.init()
    b, r = cfg.train.batch_size, cfg.eval.recal_batches
    rng = np.random.default_rng(0)
    images = lambda n: rng.standard_normal((n, 32, 32, 3)).astype(np.float32)  # noqa: E731
    labels = lambda n: rng.integers(0, 10, n).astype(np.int32)  # noqa: E731
    res = {"machine": machine_info(), "config": {"mobile": vars(cfg.mobile) | {"alloc": cfg.mobile.alloc},
                                                  "k": cfg.nse.k, "batch": b, "cells": space.shape[0],
                                                  "pool": space.shape[1]}}
    active = np.asarray(jax.device_get(state.space["active"]))
    print(json.dumps(res["config"], default=str), flush=True)

    # --- jaxnas steps -----------------------------------------------------------------------------
    graph = method._graph(state)
    wb, ab = ((jnp.asarray(images(b)), jnp.asarray(labels(b))) for _ in range(2))
    t0 = time.perf_counter()
    state, _ = method.weight_step(state, wb, 0.05)
    jax.block_until_ready(state.params)
    res["weight_host_path"] = method.host is not None
    res["weight_compile_and_first_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    state = method._arch(graph, state, ab)
    jax.block_until_ready(state.method["alpha"])
    res["arch_compile_and_first_s"] = time.perf_counter() - t0
    if method.host is not None:  # the host path compiles each (cell, operator) kernel when first drawn
        t0 = time.perf_counter()
        for _ in range(a.warm):
            state, _ = method.weight_step(state, wb, 0.05)
        jax.block_until_ready(state.params)
        res["weight_warm_steps"], res["weight_warm_s"] = a.warm, time.perf_counter() - t0
    times_w, times_a = [], []
    for _ in range(a.steps):
        t0 = time.perf_counter()
        state, _ = method.weight_step(state, wb, 0.05)
        jax.block_until_ready(state.params)
        times_w.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        state = method._arch(graph, state, ab)
        jax.block_until_ready(state.method["alpha"])
        times_a.append(time.perf_counter() - t0)
    res["weight_step_s"], res["arch_step_s"] = median(times_w), median(times_a)
    print("jaxnas step", res["weight_step_s"], "arch", res["arch_step_s"], flush=True)

    # --- the twin's step: the drawn operators only ---------------------------------------------------
    params, stats = jax.device_get((state.params, state.stats))
    tp = torch_tree(params, np.float32)
    lay, identity = space.layout, np.asarray(space.identity)
    xt = torch.from_numpy(np.asarray(wb[0]).transpose(0, 3, 1, 2).copy())
    yt = torch.from_numpy(np.asarray(wb[1]).astype(np.int64))

    def draw():
        while True:
            g = (rng.random(active.shape) < 0.5) & active
            if (g.any(-1) | identity | ~active.any(-1)).all():
                return [tuple(np.flatnonzero(row)) for row in g]

    def twin_step():
        for t in jax.tree.leaves(tp, is_leaf=lambda t: isinstance(t, torch.Tensor)):
            t.grad = None
        loss = torch.nn.functional.cross_entropy(twin(lay, draw(), tp, None, xt, by_id=True), yt)
        loss.backward()

    twin_step()
    res["twin_step_s"] = median([timed(twin_step) for _ in range(a.steps)])
    res["weight_step_vs_twin"] = res["twin_step_s"] / res["weight_step_s"]
    print("twin step", res["twin_step_s"], flush=True)

    # --- round-end scoring ---------------------------------------------------------------------------
    cands = np.asarray(jax.device_get(ev.sample(jax.random.key(3), jnp.zeros(space.shape),
                                                jnp.asarray(active), jnp.asarray(identity), cfg.nse.k,
                                                a.cands)))
    xs, ys, recal = images(a.images), labels(a.images), images(r * b).reshape(r, b, 32, 32, 3)
    evaluator = Evaluator(jnp.asarray(xs), jnp.asarray(ys), recal_images=jnp.asarray(recal), bn="recal",
                          chunk_size=backend.eval_chunk_size(0)).in_blocks("candidates", 64)
    def score():
        jax.block_until_ready(evaluator(graph, state.params, state.stats, Gates(jnp.asarray(cands))))

    res["score_first_pass_s"] = timed(score)
    res["score_s"] = timed(score)
    res["score_cands_per_s"] = a.cands / res["score_s"]
    print("jaxnas score", res["score_s"], flush=True)
    xst = torch.from_numpy(xs.transpose(0, 3, 1, 2).copy())
    rt = [torch.from_numpy(x.transpose(0, 3, 1, 2).copy()) for x in recal]

    def twin_score():
        with torch.no_grad():
            for g in cands:
                sel = [tuple(np.flatnonzero(row)) for row in g]
                for x in rt:  # the recalibration's forwards
                    twin(lay, sel, tp, None, x, by_id=True)
                for i in range(0, len(xst), 256):
                    twin(lay, sel, tp, stats, xst[i:i + 256], train=False, by_id=True)

    res["twin_score_s"] = timed(twin_score)
    res["twin_cands_per_s"] = a.cands / res["twin_score_s"]
    res["score_vs_twin"] = res["score_cands_per_s"] / res["twin_cands_per_s"]
    res["config"].update(candidates=a.cands, images=a.images, recal_batches=r)
    print(json.dumps(res, indent=1, default=str))
    if a.out:
        pathlib.Path(a.out).write_text(json.dumps(res, indent=1, default=str) + "\n")


if __name__ == "__main__":
    main()
