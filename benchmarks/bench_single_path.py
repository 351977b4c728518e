"""Single-path supernet step: jaxnas vs xautodl's TinyNetworkSETN (PyTorch, dynamic mode), same run.

Measures, at C=16, N=5, batch 64, CIFAR-10 shapes, a uniformly sampled architecture per step:
  - fwd+bwd: loss and gradients of the shared weights;
  - step:    fwd+bwd plus the SGD update (Nesterov 0.9, wd 5e-4, grad clip 5) = one RSPS weight step.
The two frameworks are interleaved step by step so machine load hits both alike; medians reported.
jaxnas compile time is reported separately (it is paid once per run, not per architecture).

Usage: python benchmarks/bench_single_path.py [--reps 20] [--impls eager,merged,mask] [--out FILE.json]
(`eager`: a concrete architecture, one compiled kernel per module; the others: one traced program.)
"""
from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np
import torch
from common import machine_info, timed
from flax import nnx

from jaxnas.nn import apply, loss_and_accuracy, split
from jaxnas.spaces import nb201
from jaxnas.spaces.arch import Choice
from jaxnas.spaces.nb201 import eager
from jaxnas.spaces.nb201.networks import NB201SuperNet, used_params
from jaxnas.train import optim, steps
from jaxnas.train import state as state_lib

SGD = optim.sgd(0.025, 0.9, True, 5e-4)  # the NB201 search protocol's SGD (config defaults)
GRAD_CLIP = 5.0


def jax_fns(impl, C, N, batch):
    """(state, fwd_bwd, step) for one formulation; `eager` runs outside jit (jaxnas.spaces.nb201.eager)."""
    g, p, s = split(NB201SuperNet(C, N, 10, affine=False, track_running_stats=False,
                                  single_path_impl="merged" if impl == "eager" else impl, rngs=nnx.Rngs(0)))
    state = state_lib.create(p, s, 0, SGD.init(p))

    if impl == "eager":  # the tape's loss and gradients, then the jitted update
        def fwd_bwd(params, stats, arch, x, y):
            return eager.value_and_grad(g, params, stats, x, y, Choice(np.asarray(arch)))[1]

        def step(st, arch, x, y):
            return steps.weight_step(SGD, GRAD_CLIP, g, st, x, y, 0.025, Choice(np.asarray(arch)),
                                     used=used_params(st.params, np.asarray(arch)), host=eager)[0]
        return state, fwd_bwd, step

    def loss(params, stats, arch, x, y):
        logits, _ = apply(g, params, stats, x, Choice(arch), train=True)
        return loss_and_accuracy(logits, y)[0]

    def step(st, arch, x, y):
        return steps.weight_step(SGD, GRAD_CLIP, g, st, x, y, 0.025, Choice(arch),
                                 used=used_params(st.params, arch))[0]

    return state, jax.jit(jax.grad(loss)), jax.jit(step, donate_argnums=0)


def torch_net(C, N):
    from xautodl.models.cell_searchs.search_model_setn import TinyNetworkSETN
    net = TinyNetworkSETN(C, N, 4, 10, list(nb201.OPS), False, False)
    opt = torch.optim.SGD(net.get_weights(), lr=0.025, momentum=0.9, nesterov=True, weight_decay=5e-4)
    return net, opt


def torch_step(net, opt, arch, x, y, update):
    from xautodl.models.cell_searchs.genotypes import Structure
    net.set_cal_mode("dynamic", Structure.str2structure(nb201.to_string(arch)))
    opt.zero_grad()
    _, logits = net(x)
    torch.nn.functional.cross_entropy(logits, y).backward()
    if update:
        torch.nn.utils.clip_grad_norm_(net.get_weights(), 5)
        opt.step()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--impls", default="eager",
                    help="comma list of eager, merged, switch, mask (merged at N=5: ~10 min compile)")
    ap.add_argument("--C", type=int, default=16)
    ap.add_argument("--N", type=int, default=5)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--out")
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    archs = rng.integers(0, 5, (a.reps + 1, 6)).astype(np.int32)
    # warm-up: every op
    archs[0] = [nb201.CONV1, nb201.CONV3, nb201.POOL, nb201.SKIP, nb201.NONE, nb201.CONV3]
    x = rng.standard_normal((a.batch, 32, 32, 3)).astype(np.float32)
    y = rng.integers(0, 10, a.batch).astype(np.int32)
    xj, yj = jnp.asarray(x), jnp.asarray(y)
    xt, yt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()), torch.from_numpy(y).long()
    net, opt = torch_net(a.C, a.N)

    results = dict(machine_info(), C=a.C, N=a.N, batch=a.batch, reps=a.reps)
    for impl in a.impls.split(","):
        state, fwd_bwd, step = jax_fns(impl, a.C, a.N, a.batch)
        t0 = time.perf_counter()
        jax.block_until_ready(fwd_bwd(state.params, state.stats, jnp.asarray(archs[0]), xj, yj))
        compile_fb = time.perf_counter() - t0
        t0 = time.perf_counter()
        state = jax.block_until_ready(step(state, jnp.asarray(archs[0]), xj, yj))
        compile_step = time.perf_counter() - t0
        torch_step(net, opt, archs[0], xt, yt, True)  # warm-up
        jf, js, tf, ts = [], [], [], []
        for arch in archs[1:]:  # the noqa: B023 lambdas run inside their own iteration
            aj = jnp.asarray(arch)
            jf.append(timed(lambda: jax.block_until_ready(fwd_bwd(state.params, state.stats, aj, xj, yj))))  # noqa: B023
            tf.append(timed(lambda: torch_step(net, opt, arch, xt, yt, False)))  # noqa: B023
            holder = {}
            js.append(timed(lambda: holder.update(s=jax.block_until_ready(step(state, aj, xj, yj)))))  # noqa: B023
            state = holder["s"]
            ts.append(timed(lambda: torch_step(net, opt, arch, xt, yt, True)))  # noqa: B023
        med = lambda v: float(np.median(v) * 1000)  # noqa: E731
        row = {"jax_fwd_bwd_ms": med(jf), "torch_fwd_bwd_ms": med(tf), "jax_step_ms": med(js),
               "torch_step_ms": med(ts), "jax_compile_fwd_bwd_s": compile_fb,
               "jax_compile_step_s": compile_step}
        row["speedup_fwd_bwd"] = row["torch_fwd_bwd_ms"] / row["jax_fwd_bwd_ms"]
        row["speedup_step"] = row["torch_step_ms"] / row["jax_step_ms"]
        results[impl] = row
        print(f"[{impl}] fwd+bwd jaxnas {row['jax_fwd_bwd_ms']:.0f} ms vs xautodl "
              f"{row['torch_fwd_bwd_ms']:.0f} ms (x{row['speedup_fwd_bwd']:.2f}); weight step jaxnas "
              f"{row['jax_step_ms']:.0f} ms vs {row['torch_step_ms']:.0f} ms (x{row['speedup_step']:.2f}); "
              f"compile {compile_fb:.0f}s/{compile_step:.0f}s",
              flush=True)
    if a.out:
        with open(a.out, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
