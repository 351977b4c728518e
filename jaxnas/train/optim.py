"""Optimizers as optax transformations, with PyTorch's exact update rules.

`torch_sgd` is torch.optim.SGD (weight decay added to the gradient, momentum buffer without
dampening, optional Nesterov). Parameters not used in a step (`used`, a bool tree passed as an
extra argument): since PyTorch 2.0 `zero_grad()` sets their gradients to None and SGD skips them
entirely (no momentum, no decay, no move); `decay_unsampled=True` in the config restores the
older behaviour by passing no mask. `adam_l2` is torch.optim.Adam with its L2 weight decay.

The learning rate is a hyperparameter injected into the optimizer state each step
(`optax.inject_hyperparams`), so the loop's schedule drives it and checkpoints hold it.
"""
from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax


class TorchSGDState(NamedTuple):
    momentum: Any  # one buffer per parameter, zeros at first (PyTorch's first step equals this)


def torch_sgd(learning_rate, momentum: float = 0.9, nesterov: bool = True,
              weight_decay: float = 0.0) -> optax.GradientTransformationExtraArgs:
    """torch.optim.SGD as an optax transformation; `update(..., used=tree)` skips unused parameters."""
    def init(params):
        return TorchSGDState(jax.tree.map(jnp.zeros_like, params))

    def update(grads, state, params, *, used=None, **_):
        def one(p, buf, g, u):
            d = g + weight_decay * p
            new_buf = momentum * buf + d
            step = d + momentum * new_buf if nesterov else new_buf
            delta = -learning_rate * step
            if u is None:
                return delta, new_buf
            return jnp.where(u, delta, jnp.zeros_like(delta)), jnp.where(u, new_buf, buf)

        used = jax.tree.map(lambda _: None, params) if used is None else used
        out = jax.tree.map(one, params, state.momentum, grads, used, is_leaf=lambda x: x is None)
        updates = jax.tree.map(lambda _, o: o[0], params, out)
        return updates, TorchSGDState(jax.tree.map(lambda _, o: o[1], params, out))

    return optax.GradientTransformationExtraArgs(init, update)


@functools.cache
def sgd(learning_rate: float, momentum: float, nesterov: bool, weight_decay: float):
    """`torch_sgd` with the learning rate injected per step (`with_learning_rate`). Cached, so
    equal settings give the same (hashable) object and jitted updates compile once."""
    return optax.inject_hyperparams(torch_sgd, static_args=("momentum", "nesterov", "weight_decay"))(
        learning_rate=learning_rate, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)


def with_learning_rate(opt_state, lr):
    """`opt_state` of an injected optimizer with its learning rate set to `lr` for the next update."""
    hp = dict(opt_state.hyperparams)
    hp["learning_rate"] = jnp.asarray(lr, hp["learning_rate"].dtype)
    return opt_state._replace(hyperparams=hp)


@functools.cache
def adam_l2(lr: float, b1: float, b2: float, weight_decay: float) -> optax.GradientTransformation:
    """torch.optim.Adam(lr, betas=(b1, b2), eps=1e-8, weight_decay): L2 added to the gradient
    (not decoupled AdamW)."""
    return _standard_promotion(optax.chain(optax.add_decayed_weights(weight_decay),
                                           optax.scale_by_adam(b1, b2, eps=1e-8), optax.scale(-lr)))


def _standard_promotion(tx: optax.GradientTransformation) -> optax.GradientTransformation:
    """`tx` with its update under JAX's standard dtype promotion whatever the caller's setting:
    optax's Adam raises its int32 step count to float powers (bias correction), which strict
    promotion (the test suite's) refuses."""
    def update(updates, state, params=None):
        with jax.numpy_dtype_promotion("standard"):
            return tx.update(updates, state, params)

    return optax.GradientTransformation(tx.init, update)
