"""fwd+bwd of the supernet at C=16, depth N, batch 64: cells unrolled vs lax.scan.
Usage: python benchmarks/archive/grad_scan_vs_unrolled.py unrolled|scan N merged|switch"""
import sys, time, numpy as np, jax, jax.numpy as jnp
from flax import nnx
from jaxnas.nn import split, apply
from jaxnas.spaces.nb201.networks import NB201SuperNet
from jaxnas.spaces.nb201 import networks as nbmod
from jaxnas.nn import loss_and_accuracy
mode, N, impl = sys.argv[1], int(sys.argv[2]), sys.argv[3]
if mode == "unrolled":
    def _scan(cells, h, cell_fn, tap):
        for c in cells: h = cell_fn(c, h, None)
        return h, None
    nbmod._scan_cells = _scan
g, p, s = split(NB201SuperNet(16, N, 10, single_path_impl=impl, rngs=nnx.Rngs(0)))
x = jnp.asarray(np.random.default_rng(0).normal(size=(64, 32, 32, 3)).astype(np.float32)); y = jnp.arange(64) % 10
arch = jnp.array([3, 2, 1, 4, 3, 0])
f = jax.jit(jax.grad(lambda p: loss_and_accuracy(apply(g, p, s, x, arch, train=True)[0], y)[0]))
t = time.time(); jax.block_until_ready(f(p)); c = time.time() - t
t = time.time(); jax.block_until_ready(f(p)); print(mode, N, impl, "compile", round(c, 1), "fwd+bwd", round(time.time() - t, 2), flush=True)
