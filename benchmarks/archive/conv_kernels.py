"""One convolution's forward, input gradient and kernel gradient on XLA:CPU, with and without the
two CPU choices of jaxnas (chunked kernel gradient, YNNPACK fusions), next to PyTorch.

For each NB201 stage shape (batch 64; C=16 at 32x32, 32 at 16x16, 64 at 8x8; 3x3, padding 1):
  fwd        conv forward
  dx         input gradient (jax.vjp)
  dw         kernel gradient as XLA computes it
  dw_chunk8  kernel gradient summed over 8-example batch chunks (jaxnas.nn.ops.conv2d on CPU)
  torch      PyTorch conv2d forward, and forward + both gradients
Each XLA function is compiled twice, plain and with YNNPACK (jaxnas.cpu_kernels), and the
variants are interleaved over the repetitions; medians in ms.

Usage: python benchmarks/archive/conv_kernels.py [--reps 15]
"""
from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import torch

from jaxnas import cpu_kernels


def conv(x, w):
    return jax.lax.conv_general_dilated(x, w, (1, 1), ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC"))


def dw_chunked(x, g, w, k=8):
    n = x.shape[0] // k
    return sum(jax.vjp(lambda v, i=i: conv(x[i * n:(i + 1) * n], v), w)[1](g[i * n:(i + 1) * n])[0]
               for i in range(k))


FNS = {
    "fwd": lambda x, g, w: conv(x, w),
    "dx": lambda x, g, w: jax.vjp(lambda a: conv(a, w), x)[1](g)[0],
    "dw": lambda x, g, w: jax.vjp(lambda v: conv(x, v), w)[1](g)[0],
    "dw_chunk8": dw_chunked,
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=15)
    a = ap.parse_args()
    torch.set_num_threads(2)
    ynn = {cpu_kernels.YNN_OPTION: ",".join(cpu_kernels.ALL_FUSIONS)}
    for h, c in ((32, 16), (16, 32), (8, 64)):
        key = jax.random.split(jax.random.PRNGKey(0), 3)
        x = jax.random.normal(key[0], (64, h, h, c))
        g = jax.random.normal(key[1], (64, h, h, c))
        w = 0.1 * jax.random.normal(key[2], (3, 3, c, c))
        fns = {}
        for name, f in FNS.items():
            fns[name] = jax.jit(f)
            fns[name + "+ynn"] = jax.jit(f, compiler_options=ynn)
        for f in fns.values():
            jax.block_until_ready(f(x, g, w))
        xt = torch.randn(64, c, h, h, requires_grad=True)
        wt = torch.randn(c, c, 3, 3, requires_grad=True)
        gt = torch.randn(64, c, h, h)

        def t_fwd():
            with torch.no_grad():
                torch.nn.functional.conv2d(xt, wt, padding=1)

        def t_all():
            xt.grad = wt.grad = None
            torch.nn.functional.conv2d(xt, wt, padding=1).backward(gt)

        times = {k: [] for k in [*fns, "torch_fwd", "torch_fwd+dx+dw"]}
        for _ in range(a.reps):
            for k, f in fns.items():
                t = time.perf_counter()
                jax.block_until_ready(f(x, g, w))
                times[k].append(time.perf_counter() - t)
            for k, f in (("torch_fwd", t_fwd), ("torch_fwd+dx+dw", t_all)):
                t = time.perf_counter()
                f()
                times[k].append(time.perf_counter() - t)
        print(f"C={c} {h}x{h}: " + ", ".join(f"{k} {np.median(v) * 1e3:.1f}" for k, v in times.items()), flush=True)


if __name__ == "__main__":
    main()
