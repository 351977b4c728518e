"""The search state: one pytree holding everything a search is, so Orbax saves it whole."""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class SearchState:
    params: Any          # shared network weights
    stats: Any           # BatchNorm running statistics
    momentum: Any        # SGD momentum buffers (same tree as params)
    arch: Any            # the method's architecture parameters (e.g. SETN's alpha); {} if none
    arch_opt: Any        # optimizer state of `arch`; {} if none
    key: jax.Array       # raw PRNG key data (uint32[2]); every random draw folds in the step
    step: jax.Array      # global weight-step counter
    epoch: jax.Array     # epochs completed
    epoch_step: jax.Array  # position in the current epoch's batch order
    elapsed: jax.Array   # wall-clock seconds spent so far (across resumes)


def create(params, stats, seed: int, arch=None, arch_opt=None) -> SearchState:
    """A fresh state at step 0; momentum buffers start at zero (PyTorch's first step equals this)."""
    return SearchState(
        params=params, stats=stats, momentum=jax.tree.map(jnp.zeros_like, params),
        arch={} if arch is None else arch, arch_opt={} if arch_opt is None else arch_opt,
        key=jax.random.key_data(jax.random.key(seed)), step=jnp.int32(0), epoch=jnp.int32(0),
        epoch_step=jnp.int32(0), elapsed=jnp.float32(0.0))


def step_key(state: SearchState, tag: int) -> jax.Array:
    """The PRNG key of this step for one purpose (`tag`): a function of (seed, step, tag) only."""
    key = jax.random.wrap_key_data(state.key)
    return jax.random.fold_in(jax.random.fold_in(key, state.step), tag)
