"""Optimizers as optax transformations, with PyTorch's exact update rules.

`torch_sgd` is torch.optim.SGD (weight decay added to the gradient, momentum buffer without
dampening, optional Nesterov). Parameters not used in a step (`used`, a bool tree passed as an
extra argument): since PyTorch 2.0 `zero_grad()` sets their gradients to None and SGD skips them
entirely (no momentum, no decay, no move); `decay_unsampled=True` in the config restores the
older behaviour by passing no mask. `adam_l2` is torch.optim.Adam with its L2 weight decay.

The learning rate is a hyperparameter injected into the optimizer state each step
(`optax.inject_hyperparams`), so the loop's schedule drives it and checkpoints hold it.

`make(kind, lr, ...)` is the factory for new code: "sgd" (`torch_sgd`), "adam" / "adamw"
(`torch_adam`, torch.optim.Adam / AdamW), each with an optional per-leaf weight-decay mask
(`no_decay_on_bn_and_bias`).
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax


class TorchSGDState(NamedTuple):
    momentum: Any  # one buffer per parameter, zeros at first (PyTorch's first step equals this)


def torch_sgd(learning_rate, momentum: float = 0.9, nesterov: bool = True,
              weight_decay: float = 0.0, decay_mask=None) -> optax.GradientTransformationExtraArgs:
    """torch.optim.SGD as an optax transformation; `update(..., used=tree)` skips unused parameters.

    `decay_mask` (None: decay on every parameter): a bool tree like the parameters, or a callable
    params -> such a tree; weight decay only where True, as a PyTorch parameter group with
    weight_decay=0 for the others (their gradient used as it is)."""
    def init(params):
        return TorchSGDState(jax.tree.map(jnp.zeros_like, params))

    def update(grads, state, params, *, used=None, **_):
        decays = _resolve_mask(decay_mask, params)

        def one(p, buf, g, u, decay):
            d = g + weight_decay * p if decay is None else _l2(g, p, weight_decay, decay)
            new_buf = momentum * buf + d
            step = d + momentum * new_buf if nesterov else new_buf
            delta = -learning_rate * step
            if u is None:
                return delta, new_buf
            return jnp.where(u, delta, jnp.zeros_like(delta)), jnp.where(u, new_buf, buf)

        used = jax.tree.map(lambda _: None, params) if used is None else used
        out = jax.tree.map(one, params, state.momentum, grads, used, decays, is_leaf=lambda x: x is None)
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


def _resolve_mask(decay_mask, params):
    """The per-leaf decay tree for `params`: all None (decay everywhere, the unmasked rule) without
    a mask; else the mask, called on `params` when callable."""
    if decay_mask is None:
        return jax.tree.map(lambda _: None, params)
    return decay_mask(params) if callable(decay_mask) else decay_mask


def _l2(g, p, weight_decay: float, decay):
    """g + weight_decay * p where `decay` (a bool, or a bool array), else g exactly (PyTorch skips
    the add in a group with weight_decay 0)."""
    if not weight_decay:
        return g
    if isinstance(decay, (bool, np.bool_)):
        return g + weight_decay * p if decay else g
    return jnp.where(decay, g + weight_decay * p, g)


def _decayed(weight_decay: float, decay):
    """Whether a leaf is decayed: False/True statically, or a bool array (traced mask)."""
    if not weight_decay:
        return False
    if decay is None or isinstance(decay, (bool, np.bool_)):
        return decay is None or bool(decay)
    return decay


def _lerp(a, b, w: float):
    """torch.lerp(a, b, w) with a Python weight, as PyTorch's CPU kernel computes it."""
    return a + w * (b - a) if abs(w) < 0.5 else b - (b - a) * (1.0 - w)


def _bias_correction(beta: float, step):
    """1 - beta**step in float32 without the cancellation of 1 - 0.999**t (PyTorch computes it in
    float64): -expm1(step * log(beta)); 1 for beta 0."""
    if beta == 0.0:
        return jnp.ones_like(step)
    return -jnp.expm1(step * math.log(beta))


class TorchAdamState(NamedTuple):
    step: Any  # int32 step count per parameter (PyTorch counts per parameter; unused ones don't advance)
    exp_avg: Any
    exp_avg_sq: Any


def torch_adam(learning_rate, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
               weight_decay: float = 0.0,
               decoupled: bool = False, decay_mask=None) -> optax.GradientTransformationExtraArgs:
    """torch.optim.Adam (`decoupled=False`: weight_decay * p added to the gradient, L2) or
    torch.optim.AdamW (`decoupled=True`: p scaled by 1 - lr * weight_decay before the Adam step;
    Loshchilov & Hutter, ICLR 2019), amsgrad off, PyTorch's single-tensor rule:
    m = lerp(m, g, 1 - b1); v = b2 v + (1 - b2) g^2;
    p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps).

    `update(..., used=tree)` skips unused parameters as PyTorch does for a None gradient: no move,
    no decay, moments and step count unchanged (so each parameter has its own step count, as in
    PyTorch). `decay_mask`: as in `torch_sgd`. Written out rather than chained from optax's
    `scale_by_adam`: per-parameter steps, the skip, and no int-to-float power, so it runs under
    strict dtype promotion as it is.
    """
    def init(params):
        return TorchAdamState(jax.tree.map(lambda _: jnp.zeros([], jnp.int32), params),
                              jax.tree.map(jnp.zeros_like, params), jax.tree.map(jnp.zeros_like, params))

    def update(grads, state, params, *, used=None, **_):
        decays = _resolve_mask(decay_mask, params)

        def one(p, g, t, m, v, u, decay):
            decay = _decayed(weight_decay, decay)
            lr = jnp.asarray(learning_rate, p.dtype)
            if not decoupled and decay is not False:
                g = _l2(g, p, weight_decay, decay)
            t1 = t + 1
            new_m = _lerp(m, g, 1.0 - b1)
            new_v = v * b2 + (1.0 - b2) * g * g
            step_f = t1.astype(p.dtype)
            denom = jnp.sqrt(new_v) / jnp.sqrt(_bias_correction(b2, step_f)) + eps
            delta = (-(lr / _bias_correction(b1, step_f)) * new_m) / denom
            if decoupled and decay is not False:
                shrink = -(lr * weight_decay) * p
                delta = delta + (shrink if decay is True else jnp.where(decay, shrink, jnp.zeros_like(p)))
            if u is None:
                return delta, t1, new_m, new_v
            return (jnp.where(u, delta, jnp.zeros_like(delta)), jnp.where(u, t1, t), jnp.where(u, new_m, m),
                    jnp.where(u, new_v, v))

        used = jax.tree.map(lambda _: None, params) if used is None else used
        out = jax.tree.map(one, params, grads, state.step, state.exp_avg, state.exp_avg_sq, used, decays,
                           is_leaf=lambda x: x is None)
        parts = [jax.tree.map(lambda _, o, i=i: o[i], params, out) for i in range(4)]
        return parts[0], TorchAdamState(*parts[1:])

    return optax.GradientTransformationExtraArgs(init, update)


@dataclasses.dataclass(frozen=True)
class _TreeMask:
    """A bool-tree decay mask frozen into a hashable callable, so `make` can cache on it."""
    treedef: Any
    leaves: tuple

    def __call__(self, params):
        return jax.tree.unflatten(self.treedef, self.leaves)


def _freeze_mask(decay_mask):
    if decay_mask is None or callable(decay_mask):
        return decay_mask
    leaves, treedef = jax.tree.flatten(decay_mask)
    try:
        frozen = tuple(bool(np.asarray(x).item()) if np.ndim(x) == 0 else None for x in leaves)
    except (TypeError, jax.errors.ConcretizationTypeError) as e:  # TracerArrayConversionError is a TypeError
        raise ValueError("a decay_mask tree holds concrete bools, one per parameter leaf "
                         "(for a traced mask pass a callable)") from e
    if None in frozen:
        raise ValueError("a decay_mask tree holds one bool per parameter leaf, not arrays")
    return _TreeMask(treedef, frozen)


KINDS = ("sgd", "adam", "adamw")


def make(kind: str, lr: float, *, weight_decay: float = 0.0, decay_mask=None,
         momentum: float | None = None, nesterov: bool | None = None,
         betas: tuple[float, float] | None = None,
         eps: float | None = None) -> optax.GradientTransformationExtraArgs:
    """A PyTorch-exact optimizer with its learning rate injected (`optax.inject_hyperparams`: set
    it per step with `with_learning_rate`; checkpoints hold it). Its `update` takes `used=` (a
    bool tree: parameters without a gradient this step are skipped, as PyTorch skips None grads).

    kind: "sgd" (torch.optim.SGD, `torch_sgd`; momentum default 0.9, nesterov default True),
    "adam" (torch.optim.Adam, L2 decay added to the gradient) or "adamw" (torch.optim.AdamW,
    decoupled decay lr * weight_decay * p); betas default (0.9, 0.999), eps default 1e-8.
    Options of the other kind are refused. `decay_mask`: None (decay on every parameter), a bool
    tree like the parameters, or a callable params -> such a tree, e.g.
    `no_decay_on_bn_and_bias`; weight decay only where True (PyTorch: a second parameter group
    with weight_decay 0).

    Cached: equal settings give the same object, so jitted steps taking it as a static argument
    compile once (a callable mask is compared by identity; a bool tree by value). Unmasked SGD is
    `sgd(...)` itself.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown optimizer kind {kind!r}; one of {KINDS}")
    if kind == "sgd":
        if betas is not None or eps is not None:
            raise ValueError("betas and eps are Adam's options, not SGD's")
        momentum = 0.9 if momentum is None else float(momentum)
        nesterov = True if nesterov is None else bool(nesterov)
        if decay_mask is None:
            return sgd(float(lr), momentum, nesterov, float(weight_decay))
        return _masked_sgd(float(lr), momentum, nesterov, float(weight_decay), _freeze_mask(decay_mask))
    if momentum is not None or nesterov is not None:
        raise ValueError(f"momentum and nesterov are SGD's options, not {kind}'s")
    b1, b2 = (0.9, 0.999) if betas is None else (float(betas[0]), float(betas[1]))
    return _adam(float(lr), b1, b2, 1e-8 if eps is None else float(eps), float(weight_decay), kind == "adamw",
                 _freeze_mask(decay_mask))


@functools.cache
def _masked_sgd(lr, momentum, nesterov, weight_decay, decay_mask):
    return optax.inject_hyperparams(torch_sgd,
                                    static_args=("momentum", "nesterov", "weight_decay", "decay_mask"))(
        learning_rate=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay,
        decay_mask=decay_mask)


@functools.cache
def _adam(lr, b1, b2, eps, weight_decay, decoupled, decay_mask):
    return optax.inject_hyperparams(
        torch_adam, static_args=("b1", "b2", "eps", "weight_decay", "decoupled", "decay_mask"))(
        learning_rate=lr, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay, decoupled=decoupled,
        decay_mask=decay_mask)


def no_decay_on_bn_and_bias(params):
    """A decay mask (for `make`): False for leaves of at most one dimension (BatchNorm scale and
    bias, conv and linear biases), True for kernels (2-D and more). NSE's `param_group_no_wd`
    (Ci et al., ICCV 2021): weight decay on conv and linear weights only."""
    return jax.tree.map(lambda x: np.ndim(x) > 1, params)
