"""Where a NASWOT candidate's time goes on XLA:CPU, next to PyTorch's forward alone.

1. `ProxyScorer("naswot")` (C=16, N=5, batch 128) on one block of architectures under
   `jax.profiler`, summed by XLA op (self time: an event's duration minus the events nested in it,
   numbered clones merged). Convolutions run asynchronously on the Eigen pool, so they barely show
   as self time; the sum of self times falls short of the wall time by about their share.
2. The same architectures through xautodl's `TinyNetwork` (build, then one training-mode forward
   under no_grad, no hooks): the part of the reference procedure that is not the kernel.
3. With `--kernels`: the scorer with three code kernels, interleaved over 4 blocks: the packed
   popcount (default), the popcount with its row sum as a dot, and a free kernel (a constant: wrong
   scores, the bound on what any kernel could save).

Usage: python benchmarks/archive/naswot_profile.py [--block 12] [--trace-dir /tmp/naswot_trace] [--kernels]
"""
from __future__ import annotations

import argparse
import collections
import glob
import re
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxnas.proxies import ProxyScorer, activation
from jaxnas.spaces import nb201


def self_times(xplane: str) -> collections.Counter:
    """Self time in ns per op name (clone / number suffixes merged) from a profiler xplane file."""
    from jax.profiler import ProfileData
    total = collections.Counter()
    for plane in ProfileData.from_file(xplane).planes:
        for line in plane.lines:
            evs = sorted(((e.start_ns, e.start_ns + e.duration_ns, e.name) for e in line.events),
                         key=lambda t: (t[0], -t[1]))
            stack = []
            for start, end, name in evs:
                while stack and stack[-1][1] <= start:
                    stack.pop()
                if stack:
                    total[stack[-1][2]] -= end - start
                total[name] += end - start
                stack.append((start, end, name))
    merged = collections.Counter()
    for name, ns in total.items():
        if name.startswith("$") or "Execute" in name or "asarray" in name:
            continue  # Python frames and the executor's own waiting
        merged[re.sub(r"\.clone.*", "", re.sub(r"\.\d+", "", name))] += ns
    return merged


def _popcount_dot(bits, method=None):
    d, words = bits.shape[1], activation.pack_codes(bits)
    ones = jnp.ones((words.shape[1],), jnp.float32)
    return d - jax.lax.map(lambda r: jax.lax.population_count(r[None, :] ^ words).astype(jnp.float32) @ ones, words)


def _free(bits, method=None):
    return jnp.eye(bits.shape[0]) + bits[0, 0].astype(jnp.float32)


def compare_kernels(archs, x, y, block):
    """archs/s of the scorer with each kernel; `activation.agreement_matrix` is read at trace time."""
    default, scorers = activation.agreement_matrix, {}
    try:
        for name, fn in [("popcount (default)", default), ("popcount, row sum as dot", _popcount_dot),
                         ("free (bound)", _free)]:
            activation.agreement_matrix = fn
            scorers[name] = ProxyScorer("naswot", C=16, N=5, seed=0)
            scorers[name](archs[:block], x, y)  # traced and compiled with `fn`
    finally:
        activation.agreement_matrix = default
    spent = dict.fromkeys(scorers, 0.0)
    for i in range(1, 5):
        for name, scorer in scorers.items():
            t = time.perf_counter()
            scorer(archs[i * block:(i + 1) * block], x, y)
            spent[name] += time.perf_counter() - t
    for name, s in spent.items():
        print(f"  {name:26s} {4 * block / s:.3f} archs/s")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--block", type=int, default=12)
    ap.add_argument("--trace-dir", default="/tmp/naswot_trace")
    ap.add_argument("--kernels", action="store_true", help="also compare code kernels (3 more compiles)")
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    archs = nb201.from_index(rng.choice(nb201.NUM_ARCHS, 5 * a.block, replace=False))
    x = rng.standard_normal((128, 32, 32, 3)).astype(np.float32)
    y = np.zeros(128, np.int32)
    scorer = ProxyScorer("naswot", C=16, N=5, seed=0)
    scorer(archs[:a.block], x, y)  # compile + warm-up
    t = time.perf_counter()
    scorer(archs[a.block:2 * a.block], x, y)
    wall = time.perf_counter() - t
    jax.profiler.start_trace(a.trace_dir)
    t = time.perf_counter()
    scorer(archs[a.block:2 * a.block], x, y)
    traced = time.perf_counter() - t
    jax.profiler.stop_trace()
    ops = self_times(max(glob.glob(f"{a.trace_dir}/**/*.xplane.pb", recursive=True)))
    total = sum(ops.values())
    print(f"jaxnas NASWOT: {wall / a.block:.3f} s / architecture ({traced / a.block:.3f} s traced); "
          f"self time summed over ops {total / 1e9 / a.block:.3f} s / architecture")
    for name, ns in ops.most_common(15):
        print(f"  {ns / 1e6 / a.block:7.1f} ms / arch  {100 * ns / total:5.1f} %  {name}")

    import torch
    from xautodl.models.cell_infers.tiny_network import TinyNetwork
    from xautodl.models.cell_searchs.genotypes import Structure
    xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
    build = fwd = 0.0
    for arch in archs[a.block:2 * a.block]:
        t = time.perf_counter()
        net = TinyNetwork(16, 5, Structure.str2structure(nb201.to_string(arch)), 10).train()
        build += time.perf_counter() - t
        t = time.perf_counter()
        with torch.no_grad():
            net(xt)
        fwd += time.perf_counter() - t
    print(f"PyTorch ({torch.get_num_threads()} threads): build {build / a.block:.3f} s, "
          f"forward {fwd / a.block:.3f} s / architecture (no hooks, no kernel)")
    if a.kernels:
        compare_kernels(archs, x, y, a.block)


if __name__ == "__main__":
    main()
