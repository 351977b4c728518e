"""Backend policy, in one place: which formulation a supernet pass uses and how many candidates
are vmapped at once on this backend. Only the CPU takes the host (eager) path.

Single-path formulations (benchmarks/BENCHMARKS.md sections 1 and 8): `switch` runs only the
chosen op under lax.switch (accelerators, and forward-only passes everywhere); `eager`
(`jaxnas.spaces.nb201.eager`) runs the differentiated passes on the host with one compiled kernel
per module, because on XLA:CPU convolution gradients inside traced control flow are 10-20x slower
and the branch-free `merged` program compiles for minutes. `eager` needs a concrete architecture,
so vmapped (forward-only) passes use `switch`, and traced differentiated passes `merged`.
"""
from __future__ import annotations

import jax


def is_cpu() -> bool:
    return jax.default_backend() == "cpu"


def resolve_impl(impl: str, forward_only: bool = False) -> str:
    """The single-path formulation to use for `impl` (`auto`: eager on CPU, switch elsewhere; the
    space's config section checks the name)."""
    if impl == "auto":
        impl = "eager" if is_cpu() and not forward_only else "switch"
    return "switch" if impl == "eager" and forward_only else impl


def traced_impl(impl: str) -> str:
    """The formulation of a traced (jitted, vmapped) differentiated pass: `merged` where
    `resolve_impl` says `eager` (which needs a host architecture)."""
    impl = resolve_impl(impl)
    return "merged" if impl == "eager" else impl


def host_path(impl: str) -> bool:
    """Whether differentiated single-path passes run on the host (the eager kernels)."""
    return resolve_impl(impl) == "eager"


def eval_chunk_size(chunk_size: int, accelerator_default: int = 1) -> int:
    """Candidates per vmapped chunk: `chunk_size`, or when 0: 1 on CPU, `accelerator_default`
    elsewhere (BENCHMARKS.md section 8: SETN's selection is fastest one candidate at a time on an
    H100, NASWOT at 128 images gains from chunks of 16)."""
    if chunk_size:
        return chunk_size
    return 1 if is_cpu() else accelerator_default
