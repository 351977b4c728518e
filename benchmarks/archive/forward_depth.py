"""Forward time of the supernet (impl merged|switch) or the fixed network at C=16, depth N, batch 128.
Usage: python benchmarks/archive/forward_depth.py merged|switch|fixed N"""
import sys, time, numpy as np, jax, jax.numpy as jnp
from flax import nnx
from jaxnas.nn import split, apply
from jaxnas.spaces.nb201.networks import NB201SuperNet, NB201Network
impl = sys.argv[1]; N = int(sys.argv[2]); B = 128
arch = jnp.array([3, 2, 1, 4, 3, 0])
x = jnp.asarray(np.random.default_rng(0).normal(size=(B, 32, 32, 3)).astype(np.float32))
if impl == "fixed":
    g, p, s = split(NB201Network(np.asarray(arch), 16, N, 10, rngs=nnx.Rngs(0)))
    f = jax.jit(lambda p, s, x: apply(g, p, s, x, train=True)[0])
    args = (p, s, x)
else:
    g, p, s = split(NB201SuperNet(16, N, 10, affine=True, track_running_stats=True, single_path_impl=impl, rngs=nnx.Rngs(0)))
    f = jax.jit(lambda p, s, x, a: apply(g, p, s, x, a, train=True)[0])
    args = (p, s, x, arch)
t = time.time(); jax.block_until_ready(f(*args)); c = time.time() - t
ts = []
for _ in range(3):
    t = time.time(); jax.block_until_ready(f(*args)); ts.append(time.time() - t)
print(impl, "N", N, "compile+1st", round(c, 1), "fwd s", [round(v, 2) for v in ts], flush=True)
