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
  host      jaxnas's host path (`smash.impl=eager`, the CPU default: exact shapes, one compiled kernel
            per layer piece and shape signature): the same candidates run twice, the first pass
            compiling their kernels (timed apart), the second timed; the whole SMASH step (HyperNet,
            main network, Adam) the same way; and `--fresh` steps of fresh architectures in a row,
            as training meets them, compiles included, with the kernels compiled so far.
The architectures are the JAX sampler's at its final bounds (the second half of training) and, for
the step, also at the bounds of the first steps of the annealing (kernel 3, half the budget). The
FLOPs each side does are reported too: the traced program's (XLA's cost analysis) against the
architectures' own (the space's cost model), the price of one fixed-shape program.

Usage: python benchmarks/bench_smash.py [--impl both|eager|traced] [--out benchmarks/results/smash_cpu.json]
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
from jaxnas.spaces.arch import Choice
from jaxnas.spaces.smash import eager

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
    ap.add_argument("--fresh", type=int, default=40, help="host path: fresh-architecture steps in a row")
    ap.add_argument("--impl", choices=("both", "eager", "traced"), default="both")
    ap.add_argument("--out")
    a = ap.parse_args()
    cfg = config.preset("tiny", "smash", "smash").set({"eval.batch_size": a.images})
    space = get_space("smash").configure(cfg)
    lay = space.layout
    traced, host = a.impl in ("both", "traced"), a.impl in ("both", "eager")
    method = SMASH(cfg.set({"smash.impl": "traced"}), space, 10)
    hmethod = SMASH(cfg.set({"smash.impl": "eager"}), space, 10)
    for m in (method, hmethod):
        m.total_steps = 1000
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

    def step_phase(bounds, offset):
        archs = jax.device_get(space.sample(jax.random.key(1), a.reps + 1, bounds))
        cands = jax.device_get(space.with_noise(jax.random.key(2), archs, bounds))
        pick = [jax.tree.map(lambda v, i=i: v[i], cands) for i in range(a.reps + 1)]
        ws = [np.asarray(gen(params, stats, c)) for c in pick]
        plain = [{k: v for k, v in c.items() if k not in ("z", "max_kernel")} for c in pick]
        refs = [space.to_reference(c) for c in plain]
        cost = jax.device_get(jax.vmap(space.cost)(archs))
        out = {}
        if traced:
            compiled = main_grad.lower(p_main, jnp.asarray(ws[0]), s_main, plain[0], xj, yj).compile()
            jax.block_until_ready(compiled(p_main, ws[0], s_main, plain[0], xj, yj))  # warm-up
            t_main = median_time(lambda i: jax.block_until_ready(
                compiled(p_main, ws[i + 1], s_main, plain[i + 1], xj, yj)), a.reps)
            st = state.replace(space=bounds)
            t0 = time.perf_counter()
            jax.block_until_ready(step(st, 0))
            step_compile = time.perf_counter() - t0
            t_step = median_time(lambda i: jax.block_until_ready(step(st, i + 1)), a.reps)
            out.update({"jax_smash_step_s": t_step, "jax_main_fwd_bwd_s": t_main,
                        "jax_step_compile_s": step_compile, "jax_main_program_gflop": flops(compiled) / 1e9})
        if host:
            out.update(host_phase(bounds, pick, offset))

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
        out["twin_main_fwd_bwd_s"] = t_twin
        for name, k in (("main", "jax_main_fwd_bwd_s"), ("step", "jax_smash_step_s"),
                        ("host_value_and_grad", "host_value_and_grad_s"), ("host_step", "host_smash_step_s")):
            if k in out:
                out[f"{name}_speed_vs_twin"] = t_twin / out[k]
        # forward + backward ~ 3 forwards of the architectures' own convolutions and matmuls
        out.update({"architectures_gflop": 3 * a.batch * float(np.mean(cost["flops"])) / 1e9,
                    "layers_mean": np.mean(archs["layers"], 0).tolist()})
        return out

    def host_phase(bounds, pick, offset):
        """The host path on the phase's candidates (value_and_grad, then whole steps), twice each."""
        passes, kernels_before = [], None
        for _ in range(2):
            times = []
            for c in pick:
                t0 = time.perf_counter()
                jax.block_until_ready(eager.value_and_grad(hmethod.graphdef, params, stats, xj, yj,
                                                           Choice(c)))
                times.append(time.perf_counter() - t0)
            passes.append(times)
        st = state.replace(space=bounds)

        def host_step(i):  # on a copy, as the update donates the state; the step sets the bounds
            s_i = jax.block_until_ready(jax.tree.map(jnp.copy, st.replace(step=st.step + offset + i)))
            return timed(lambda: jax.block_until_ready(
                hmethod.train_step(s_i, (xj, yj), None, 1e-3)[0].params))
        steps = [[host_step(i) for i in range(len(pick))] for _ in range(2)]
        kernels_before = eager.kernels_compiled()
        fresh = [host_step(10_000 + i) for i in range(a.fresh if offset else 0)]  # final bounds only
        k0 = eager.kernels_compiled()
        return {"host_value_and_grad_s": float(np.median(passes[1])),
                "host_value_and_grad_first_pass_s": float(np.mean(passes[0])),
                "host_smash_step_s": float(np.median(steps[1])),
                "host_smash_step_first_pass_s": float(np.mean(steps[0])),
                "host_fresh_steps": len(fresh), "host_fresh_step_mean_s": float(np.mean(fresh or [np.nan])),
                "host_fresh_kernels_compiled": k0 - kernels_before,
                "host_kernels_compiled_total": eager.kernels_compiled()}

    # the steps' bounds: annealed over the first half of the 1,000 steps
    for phase, bounds, offset in (("final", space.init_state(), 1_000),
                                  ("first", space.annealed_state(0.0), 0)):
        res[f"step_{phase}"] = step_phase(bounds, offset)
        print(phase, json.dumps(res[f"step_{phase}"]), flush=True)

    # --- scoring ---------------------------------------------------------------------------------
    xs = rng.standard_normal((a.images, 32, 32, 3)).astype(np.float32)
    ys = rng.integers(0, 10, a.images).astype(np.int32)
    ev = Evaluator(jnp.asarray(xs), jnp.asarray(ys), bn="running",
                   chunk_size=backend.eval_chunk_size(a.chunk))
    archs = jax.device_get(space.sample(jax.random.key(3), a.cands, space.init_state()))
    res["score"] = {"candidates": a.cands, "images": a.images}
    for tag, m, on in (("jax", method, traced), ("host", hmethod, host)):
        if not on:
            continue
        t0 = time.perf_counter()
        m.score(state, archs, jax.random.key(4), ev)
        res["score"][f"{tag}_first_pass_s"] = time.perf_counter() - t0
        t_jax = median_time(lambda i, m=m: m.score(state, archs, jax.random.key(5 + i), ev), a.score_reps)
        res["score"][f"{tag}_s"] = t_jax
        res["score"][f"{tag}_cands_per_s"] = a.cands / t_jax
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
    res["score"].update({"twin_s": t_twin, "twin_cands_per_s": a.cands / t_twin, "chunk_size": ev.chunk_size})
    for tag in ("jax", "host"):
        if f"{tag}_s" in res["score"]:
            res["score"][f"{tag}_speedup"] = t_twin / res["score"][f"{tag}_s"]
    print("score", json.dumps(res["score"]), flush=True)
    if a.out:
        pathlib.Path(a.out).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
