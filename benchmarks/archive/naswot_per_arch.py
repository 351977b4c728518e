"""Seconds per NASWOT candidate of ProxyScorer at C=16, depth N, batch 128.
Usage: python benchmarks/archive/naswot_per_arch.py IMPL per_arch|shared N [same]"""
import sys, time, numpy as np, jax, jax.numpy as jnp
from jaxnas.proxies import ProxyScorer
from jaxnas.spaces import nb201
impl, init, N = sys.argv[1], sys.argv[2], int(sys.argv[3])
rng = np.random.default_rng(0)
x = rng.normal(size=(128, 32, 32, 3)).astype(np.float32); y = rng.integers(0, 10, 128).astype(np.int32)
archs = np.tile(np.array([[3, 2, 1, 4, 3, 0]], np.int32), (4, 1)) if len(sys.argv) > 4 else nb201.from_index(np.arange(4))
sc = ProxyScorer("naswot", C=16, N=N, seed=0, init=init, chunk_size=1, single_path_impl=impl)
t = time.time(); sc(archs, x, y); c = time.time() - t
t = time.time(); sc(archs, x, y); print(impl, init, N, "compile", round(c, 1), "per arch", round((time.time() - t) / 4, 2), flush=True)
