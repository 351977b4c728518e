"""NASWOT's code kernel for one ReLU input: float matmul of +-1 codes vs packed XOR + popcount.

B=128 images, d=16384 units (a stage-1 node at C=16), single core. Both give the same integers.
Usage: XLA_FLAGS=--xla_cpu_multi_thread_eigen=false taskset -c 1 python benchmarks/archive/hamming_kernel.py
"""
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxnas.proxies.activation import hamming_matrix, pack_codes

B, D = 128, 16384


@jax.jit
def matmul_kernel(x):
    s = jnp.where(x > 0, 1.0, -1.0)
    return (s @ s.T + D) / 2


@jax.jit
def packed_kernel(x):
    return D - hamming_matrix(pack_codes(x > 0))


def main():
    x = jnp.asarray(np.random.default_rng(0).standard_normal((B, D)).astype(np.float32))
    ref = np.asarray(matmul_kernel(x), np.float64)
    for f in (matmul_kernel, packed_kernel):
        assert np.array_equal(np.asarray(f(x), np.float64), ref)
        ts = []
        for _ in range(7):
            t = time.perf_counter()
            jax.block_until_ready(f(x))
            ts.append(time.perf_counter() - t)
        print(f"{f.__name__}: min {min(ts) * 1e3:.1f} ms, median {np.median(ts) * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
