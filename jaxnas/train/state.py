"""The search state: one pytree holding everything a search is, so Orbax saves it whole."""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

# Tags for step_key: each purpose draws its own stream from (seed, step).
KEY_AUGMENT_W, KEY_AUGMENT_A, KEY_SAMPLE, KEY_METHOD = range(4)
SELECT_KEY_STEP = -1  # selection draws with this "step", apart from every training step


@struct.dataclass
class SearchState:
    params: Any          # network weights (shared by every candidate of a supernet)
    stats: Any           # BatchNorm running statistics
    opt_state: Any       # optax state of the weights' optimizer
    method: Any          # the method's own state (e.g. SETN's alpha and its Adam state); {} if none
    space: Any           # the space state (e.g. the ops ABS keeps); {} for a fixed space
    key: jax.Array       # raw PRNG key data (uint32[2]); every random draw folds in the step
    step: jax.Array      # global weight-step counter
    epoch: jax.Array     # epochs completed (over all rounds; round r holds epochs [r E, (r + 1) E))
    epoch_step: jax.Array  # position in the current epoch's batch order
    round: jax.Array     # rounds completed
    elapsed: jax.Array   # wall-clock seconds spent so far (across resumes)


def create(params, stats, seed: int, opt_state=None, method=None, space=None) -> SearchState:
    """A fresh state at step 0."""
    return SearchState(
        params=params, stats=stats, opt_state={} if opt_state is None else opt_state,
        method={} if method is None else method, space={} if space is None else space,
        key=jax.random.key_data(jax.random.key(seed)), step=jnp.int32(0), epoch=jnp.int32(0),
        epoch_step=jnp.int32(0), round=jnp.int32(0), elapsed=jnp.float32(0.0))


def step_key(state: SearchState, tag: int) -> jax.Array:
    """The PRNG key of this step for one purpose (`tag`): a function of (seed, step, tag) only."""
    key = jax.random.wrap_key_data(state.key)
    return jax.random.fold_in(jax.random.fold_in(key, state.step), tag)


def select_key(state: SearchState) -> jax.Array:
    """The key of the final selection's draws, apart from every training step's."""
    return step_key(state.replace(step=jnp.int32(SELECT_KEY_STEP)), KEY_SAMPLE)
