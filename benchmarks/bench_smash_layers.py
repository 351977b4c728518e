"""How to run SMASH's memory-bank layers on XLA:CPU (issue 31, item 8's "measure unrolled against
scanned layers before choosing"): the gradient of 8 layers of the network's shape (memory of 48
channels, 1x1 read to 32 units, a dilated grouped conv from a 7x7 kernel bank, a write back),
batch 16 at 32x32, in four forms:

  unrolled   the layers as straight-line code, each conv at the largest extent (9x9), masked
  scan       the same layer body under lax.scan
  cond       unrolled, padding layer slots skipped by lax.cond on a traced flag
  switch     unrolled, each conv at its own extent (3, 5, 7 or 9) by lax.switch on a traced index

Usage: python benchmarks/bench_smash_layers.py [form ...]   (default: all four; XLA's default flags)
"""
from __future__ import annotations

import sys
import time

import jax
import jax.numpy as jnp

from jaxnas.nn import ops
from jaxnas.spaces.smash.network import sliced_kernel

B, H, WIDTH, UNITS, LAYERS = 16, 32, 48, 32, 8
KERNELS = [[3, 3], [5, 5], [7, 3], [3, 5], [5, 3], [3, 3], [3, 3], [3, 3]]
DILATIONS = [[1, 1], [2, 1], [1, 1], [3, 1], [1, 2], [1, 1], [1, 1], [1, 1]]
LIVE = [True] * 5 + [False] * 3


def network(form, bank, reads, writes, kernels, dilations, live):
    memory = jnp.ones((B, H, H, WIDTH)) * jnp.linspace(-1, 1, WIDTH)

    def layer(m, i):
        h = jax.nn.relu(jnp.einsum("bhwc,co->bhwo", m, reads[i]))

        def at(extent, h):
            k = sliced_kernel(bank, kernels[i], dilations[i], 2, UNITS, UNITS, extent)
            return ops.conv(jax.nn.relu(h), k, padding=extent // 2)
        if form == "switch":
            reach = jnp.max((kernels[i] - 1) * dilations[i] + 1)
            y = jax.lax.switch((reach - 3) // 2, [lambda h, e=e: at(e, h) for e in (3, 5, 7, 9)], h)
        else:
            y = at(9, h)
        return m + jnp.einsum("bhwo,oc->bhwc", y, writes[i])

    if form == "scan":
        return jax.lax.scan(lambda m, i: (layer(m, i), None), memory, jnp.arange(LAYERS))[0]
    for i in range(LAYERS):
        if form == "cond":
            memory = jax.lax.cond(live[i], lambda m, i=i: layer(m, i), lambda m: m, memory)
        else:
            memory = layer(memory, i)
    return memory


def main(forms):
    keys = jax.random.split(jax.random.key(0), 3)
    bank = jax.random.normal(keys[0], (7, 7, UNITS, UNITS)) * 0.05
    reads = jax.random.normal(keys[1], (LAYERS, WIDTH, UNITS)) * 0.1
    writes = jax.random.normal(keys[2], (LAYERS, UNITS, WIDTH)) * 0.1
    # the architecture arrays are arguments (traced, as in training): as constants XLA folds the
    # branches away
    arch = (jnp.asarray(KERNELS), jnp.asarray(DILATIONS), jnp.asarray(LIVE))
    print(f"jax {jax.__version__}, {jax.devices()[0].platform}, batch {B}, {H}x{H}, {LAYERS} layers")
    for form in forms:
        loss = lambda b, r, *a, f=form: jnp.mean(network(f, b, r, writes, *a) ** 2)  # noqa: E731
        grad = jax.jit(jax.grad(loss, (0, 1)))
        t = time.perf_counter()
        jax.block_until_ready(grad(bank, reads, *arch))
        compile_s = time.perf_counter() - t
        t = time.perf_counter()
        for _ in range(3):
            jax.block_until_ready(grad(bank, reads, *arch))
        ms = 1000 * (time.perf_counter() - t) / 3
        print(f"{form:9s} gradient {ms:8.0f} ms   (first call {compile_s:.1f} s)", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:] or ["unrolled", "scan", "cond", "switch"])
