"""`jit` with XLA:CPU's YNNPACK kernels for convolutions, matmuls, elementwise ops and reductions.

XLA:CPU can hand these to YNNPACK (compiler option `xla_cpu_experimental_ynn_fusion_type`, off by
default in jaxlib 0.10). For the eager single-path modules it halves a convolution's forward and
input gradient (C=32, 16x16, batch 64: 9.0 -> 4.4 ms) and took the C=16, N=5 weight step from
1.11 s to 0.83 s on 2 cores (benchmarks/BENCHMARKS.md, section 1); values equal XLA's own kernels
up to float rounding. It is experimental: the elementwise / reduction fusions fail to compile
some programs ("unsupported layout in YNN fusion", e.g. the NASWOT kernel), so it is switched on
per function with the fusion types that function was tested with, and a program that still
fails when it first runs is compiled again without it (with a warning; not possible for donated
arguments, which the failed run consumed). Off on other backends, for jaxlib < 0.10,
or with JAXNAS_YNN=0.
"""
from __future__ import annotations

import functools
import os
import warnings

import jax

YNN_OPTION = "xla_cpu_experimental_ynn_fusion_type"
DOT, ELTWISE, REDUCE = "LIBRARY_FUSION_TYPE_DOT", "LIBRARY_FUSION_TYPE_ELTWISE", "LIBRARY_FUSION_TYPE_REDUCE"
ALL_FUSIONS = (DOT, ELTWISE, REDUCE)


def ynn_enabled() -> bool:
    """Whether `jit` turns YNNPACK on: CPU backend, jaxlib >= 0.10, JAXNAS_YNN not 0."""
    if os.environ.get("JAXNAS_YNN", "1") == "0" or jax.default_backend() != "cpu":
        return False
    import jaxlib
    try:
        major, minor = (int(v) for v in jaxlib.__version__.split(".")[:2])
    except ValueError:
        return False
    return (major, minor) >= (0, 10)


def jit(fun=None, *, fusions=ALL_FUSIONS, **jit_kwargs):
    """jax.jit, with the YNNPACK `fusions` when `ynn_enabled()`. Decided at the first call, not at
    import, so that importing never starts the backend (jax.distributed.initialize must come
    first). Called on traced values (inside jit, or under jax.grad) it is a plain jax.jit: JAX
    takes compiler options only for the outermost program."""
    if fun is None:
        return functools.partial(jit, fusions=fusions, **jit_kwargs)
    plain = jax.jit(fun, **jit_kwargs)
    chosen = []

    def run(args, kwargs):
        if chosen[0] is plain:
            return plain(*args, **kwargs)
        fast, before = chosen[0], chosen[0]._cache_size()
        try:
            out = fast(*args, **kwargs)
            if fast._cache_size() != before:  # a new program: YNNPACK errors surface when it first runs
                jax.block_until_ready(out)
            return out
        except jax.errors.JaxRuntimeError as e:
            if "YNN" not in str(e):
                raise
            warnings.warn(f"{getattr(fun, '__name__', fun)}: YNNPACK failed on it "
                          f"({str(e).splitlines()[0]}); using XLA's own kernels", RuntimeWarning,
                          stacklevel=3)
            chosen[0] = plain
            return plain(*args, **kwargs)

    @functools.wraps(fun)
    def call(*args, **kwargs):
        if not chosen:
            chosen.append(jax.jit(fun, compiler_options={YNN_OPTION: ",".join(fusions)}, **jit_kwargs)
                          if fusions and ynn_enabled() else plain)
        if any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves((args, kwargs))):
            return plain(*args, **kwargs)
        return _wait_if_multi_device(run(args, kwargs))

    def cache_size() -> int:
        """Programs compiled so far for untraced calls, e.g. for tests that guard against recompiling."""
        return (chosen[0] if chosen else plain)._cache_size()

    call.cache_size = cache_size
    return call


def _wait_if_multi_device(out):
    """Wait for `out` when it spans several CPU devices, so that at most one such program is in flight.

    XLA:CPU (jaxlib 0.10) can deadlock when many multi-device programs with all-reduces are queued:
    the threads that run device programs fill up with later programs waiting for their inputs, the
    last device of the earliest all-reduce never starts, and the rendezvous aborts the process after
    40 s ("Expected 8 threads to join the rendezvous, but only 7 of them arrived"). Seen in fresh-clone
    CI on 8 emulated devices and reproduced in 5-18 repeated small RSPS searches; none in 30 with this
    wait. Single-device runs and other backends keep fully asynchronous dispatch.
    """
    leaves = jax.tree.leaves(out)
    if leaves and isinstance(leaves[0], jax.Array) and len(leaves[0].sharding.device_set) > 1 \
            and jax.default_backend() == "cpu":
        jax.block_until_ready(out)
    return out
