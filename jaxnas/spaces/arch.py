"""How a supernet's forward reads an architecture: a typed container around the space's arrays.

A space's architecture is plain arrays (NB201: `int32[6]`); the container says which network it
stands for, so one forward serves every formulation without a `mode=` string:

  - `Choice`:  one choice per decision (NB201 `int32[6]` op ids): exactly the standalone network;
  - `Weights`: a weight per option of each decision (`float[6, 5]`): sum_k w_k op_k(x), the
               relaxed network of DARTS and SETN's "joint" mode;
  - `Gates`:   several gated options per decision (`float[6, 5]`, 0/1): the mean of the gated
               options, multi-branch cells (NSE averages its selected branches);
  - `InputGates`: a gate per option of each decision (`float[6, 5]`, or `float[B, 6, 5]` for one set
               per example) that scales the option's *input*; the options' outputs are summed
               (PGNAS's concrete-dropout gates; with 0/1 gates the sum of the kept options).

Each container is a pytree whose one child is the value, so a batch of K candidates (a leading K
axis on the value) goes through `vmap`, `lax.map` and `jit` unchanged.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import jax


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class _Arch:
    value: Any

    @property
    def batch_size(self) -> int:
        """K of a batch of candidates (the leading axis of the value's leaves)."""
        return jax.tree.leaves(self.value)[0].shape[0]


class Choice(_Arch):
    """One choice per decision: the single-path (standalone) network of the architecture."""


class Weights(_Arch):
    """Weights per decision: every option runs, mixed by its weight."""


class Gates(_Arch):
    """Several gated options per decision: the mean of the options whose gate is on."""


class InputGates(_Arch):
    """A gate per option, applied to the option's input (per example allowed); outputs summed."""


for _cls in (Choice, Weights, Gates, InputGates):  # subclasses need their own registration as pytrees
    jax.tree_util.register_dataclass(dataclasses.dataclass(frozen=True)(_cls))

KINDS = (Choice, Weights, Gates, InputGates)


def wrap(arch, default=Choice):
    """`arch` if it is already a container, else `default(arch)`: a bare array is one choice per
    decision unless said otherwise (the proxies take either)."""
    return arch if isinstance(arch, KINDS) else default(arch)


def check(arch, accepted=KINDS):
    """`arch` if it is one of the `accepted` containers, else TypeError saying how to wrap it."""
    if not isinstance(arch, accepted):
        names = " / ".join(c.__name__ for c in accepted)
        raise TypeError(f"an architecture for the forward must be wrapped as {names} "
                        f"(jaxnas.spaces.arch), e.g. Choice(ops); got {type(arch).__name__}")
    return arch
