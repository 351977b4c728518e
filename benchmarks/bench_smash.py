"""SMASH on the memory-bank space at the tiny size on CPU (issue 31, item 8): training steps per second
and candidates scored per second, against the PyTorch twin of the main network
(tests/spaces/smash_twin.py: the reference's forward with exact, ragged shapes) looping one
candidate at a time.

  step      jaxnas: the whole SMASH step (sample an architecture and z, the HyperNet, the main network
            forward and backward, Adam), jitted, on one batch; and the main network's forward and
            backward alone given generated weights (the twin's share of the work).
            twin: forward and backward of the main network, given generated weights (no HyperNet, no
            optimizer: favours the twin).
  score     candidates per second on the held-out images in evaluation mode (running BN statistics):
            jaxnas's Evaluator on K candidates (one compiled program for all of them, vmapped
            chunks); the twin one candidate at a time under torch.no_grad.
The architectures are the JAX sampler's at its final bounds (the second half of training) and, for
the step, also at the bounds of the first steps of the annealing (kernel 3, half the budget). The
FLOPs each side does are reported too: the traced program's (XLA's cost analysis) against the
architectures' own (the space's cost model), the price of one fixed-shape program.

Usage: python benchmarks/bench_smash.py [--out benchmarks/results/smash_cpu.json]
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
import torch.nn.functional as tf
from common import machine_info, timed
from flax import nnx

from jaxnas import backend, config
from jaxnas.evaluate import Evaluator
from jaxnas.methods.smash import SMASH
from jaxnas.nn import functional as fn
from jaxnas.spaces import get as get_space

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests" / "spaces"))
from smash_twin import leaves, to_torch, twin_forward  # noqa: E402  (the test oracle, found above)


def median_time(fn, reps):
    """Median seconds of fn(0), ..., fn(reps - 1)."""
    return float(np.median([timed(lambda i=i: fn(i)) for i in range(reps)]))


def flops(compiled) -> float:
    ca = compiled.cost_analysis()
    return float((ca[0] if isinstance(ca, list) else ca).get("flops", 0.0))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=50)       # the reference's training batch
    ap.add_argument("--images", type=int, default=300)     # held-out images per candidate (tiny preset)
    ap.add_argument("--cands", type=int, default=8)
    ap.add_argument("--reps", type=int, default=8)
    ap.add_argument("--score-reps", type=int, default=1)
    ap.add_argument("--chunk", type=int, default=0, help="candidates per vmapped chunk (0: as a search run)")
    ap.add_argument("--out")
    a = ap.parse_args()
    cfg = config.preset("tiny", "smash", "smash").set({"eval.batch_size": a.images})
    space = get_space("smash").configure(cfg)
    lay = space.layout
    method = SMASH(cfg, space, 10)
    method.total_steps = 1000
    state = method.init()
    rng = np.random.default_rng(0)
    res = dict(machine_info(), size="tiny", smash=vars(space.config), batch=a.batch, images=a.images)

    # the main network's own parameters and statistics, and its loss given generated weights
    params, stats = state.params, state.stats
    main_graph, p_main, s_main = fn.split(nnx.merge(method.graphdef, params, stats).main)

    def main_loss(p, w, s, arch, xb, yb):
        logits, new = fn.apply(main_graph, p, s, xb, arch, w, True)
        return jnp.mean(-jax.nn.log_softmax(logits)[jnp.arange(len(yb)), yb]), new
    main_grad = jax.jit(jax.grad(main_loss, (0, 1), has_aux=True))
    gen = jax.jit(lambda p, s, cand: nnx.merge(method.graphdef, p, s).weights(cand))
    x = rng.standard_normal((a.batch, 32, 32, 3)).astype(np.float32)
    y = rng.integers(0, 10, a.batch).astype(np.int32)
    xj, yj = jnp.asarray(x), jnp.asarray(y)
    xt, yt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()), torch.from_numpy(y).long()
    tp, tstats = to_torch(jax.device_get(p_main), jax.device_get(s_main), np.float32)
    step = jax.jit(lambda st, i: method.train_step(st.replace(step=st.step + i), (xj, yj), None, 1e-3)[0])

    def step_phase(bounds):
        archs = jax.device_get(space.sample(jax.random.key(1), a.reps + 1, bounds))
        cands = jax.device_get(space.with_noise(jax.random.key(2), archs, bounds))
        pick = [jax.tree.map(lambda v, i=i: v[i], cands) for i in range(a.reps + 1)]
        ws = [np.asarray(gen(params, stats, c)) for c in pick]
        plain = [{k: v for k, v in c.items() if k not in ("z", "max_kernel")} for c in pick]
        refs = [space.to_reference(c) for c in plain]
        cost = jax.device_get(jax.vmap(space.cost)(archs))
        compiled = main_grad.lower(p_main, jnp.asarray(ws[0]), s_main, plain[0], xj, yj).compile()
        jax.block_until_ready(compiled(p_main, ws[0], s_main, plain[0], xj, yj))  # warm-up
        t_main = median_time(lambda i: jax.block_until_ready(
            compiled(p_main, ws[i + 1], s_main, plain[i + 1], xj, yj)), a.reps)
        st = state.replace(space=bounds)
        t0 = time.perf_counter()
        jax.block_until_ready(step(st, 0))
        step_compile = time.perf_counter() - t0
        t_step = median_time(lambda i: jax.block_until_ready(step(st, i + 1)), a.reps)

        def twin_step(i):
            for t in leaves(tp):
                t.grad = None
                t.requires_grad_(True)
            w = torch.from_numpy(ws[i + 1]).requires_grad_(True)
            logits, _ = twin_forward(lay, refs[i + 1], w, tp, [(m.clone(), v.clone()) for m, v in tstats], xt,
                                     10)
            tf.cross_entropy(logits, yt).backward()
        twin_step(-1)  # warm-up
        t_twin = median_time(twin_step, a.reps)
        return {"jax_smash_step_s": t_step, "jax_main_fwd_bwd_s": t_main, "twin_main_fwd_bwd_s": t_twin,
                "main_speed_vs_twin": t_twin / t_main, "step_speed_vs_twin": t_twin / t_step,
                "jax_step_compile_s": step_compile, "jax_main_program_gflop": flops(compiled) / 1e9,
                # forward + backward ~ 3 forwards of the architectures' own convolutions and matmuls
                "architectures_gflop": 3 * a.batch * float(np.mean(cost["flops"])) / 1e9,
                "layers_mean": np.mean(archs["layers"], 0).tolist()}

    for phase, bounds in (("final", space.init_state()), ("first", space.annealed_state(0.0))):
        res[f"step_{phase}"] = step_phase(bounds)
        print(phase, json.dumps(res[f"step_{phase}"]), flush=True)

    # --- scoring ---------------------------------------------------------------------------------
    xs = rng.standard_normal((a.images, 32, 32, 3)).astype(np.float32)
    ys = rng.integers(0, 10, a.images).astype(np.int32)
    ev = Evaluator(jnp.asarray(xs), jnp.asarray(ys), bn="running",
                   chunk_size=backend.eval_chunk_size(a.chunk))
    archs = jax.device_get(space.sample(jax.random.key(3), a.cands, space.init_state()))
    t0 = time.perf_counter()
    method.score(state, archs, jax.random.key(4), ev)
    score_compile = time.perf_counter() - t0
    t_jax = median_time(lambda i: method.score(state, archs, jax.random.key(5 + i), ev), a.score_reps)
    cands = jax.device_get(space.with_noise(jax.random.key(4), archs, space.init_state()))
    xst = torch.from_numpy(xs.transpose(0, 3, 1, 2).copy())
    pick = [jax.tree.map(lambda v, i=i: v[i], cands) for i in range(a.cands)]
    ws = [torch.from_numpy(np.asarray(gen(params, stats, c))) for c in pick]  # generated beforehand
    refs = [space.to_reference({k: v for k, v in c.items() if k not in ("z", "max_kernel")}) for c in pick]

    def twin_scores(_):
        with torch.no_grad():
            for w, ref in zip(ws, refs):
                twin_forward(lay, ref, w, tp, tstats, xst, 10, train=False)[0].argmax(1)
    twin_scores(0)
    t_twin = median_time(twin_scores, a.score_reps)
    res["score"] = {"candidates": a.cands, "images": a.images, "jax_s": t_jax, "twin_s": t_twin,
                    "jax_cands_per_s": a.cands / t_jax, "twin_cands_per_s": a.cands / t_twin,
                    "speedup": t_twin / t_jax, "jax_compile_s": score_compile,
                    "chunk_size": ev.chunk_size}
    print("score", json.dumps(res["score"]), flush=True)
    if a.out:
        pathlib.Path(a.out).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
