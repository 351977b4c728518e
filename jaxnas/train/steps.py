"""Pure pieces of a training step: loss and gradients, gradient clipping, the optimizer update
(`update`, of any parameter tree), the cosine learning rate.

`loss_and_grads` is the one place that picks traced or host execution: a network with host
passes (`host`, e.g. `jaxnas.spaces.nb201.eager` on CPU) computes its single-path and relaxed
gradients outside jit, one compiled kernel per module; otherwise `jax.value_and_grad` traces the
forward. Methods never branch on it.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from jaxnas import cpu_kernels
from jaxnas.nn import apply, loss_and_accuracy
from jaxnas.train.optim import with_learning_rate


def cosine_lr(step, total_steps: int, lr: float, lr_min: float):
    """Cosine annealing from `lr` at step 0 to `lr_min` at `total_steps`, per step."""
    t = jnp.minimum(step, total_steps) / max(total_steps, 1)
    return lr_min + 0.5 * (lr - lr_min) * (1.0 + jnp.cos(jnp.pi * t))


def scheduled_lr(step, steps_per_round: int, rounds: int, warmup_steps: int, lr: float, lr_min: float,
                 per_round: bool):
    """The learning rate at `step`: a linear warmup over `warmup_steps` (lr * (t + 1) / warmup_steps),
    then `cosine_lr` from `lr` to `lr_min` over the remaining steps; over the whole run, or restarted
    every round (`per_round`, NSE). Without warmup and `per_round`, exactly `cosine_lr` over the run."""
    span = steps_per_round if per_round else steps_per_round * rounds
    t = step % span if per_round else step
    if not warmup_steps:
        return cosine_lr(t, span, lr, lr_min)
    warm = lr * (jnp.asarray(t, jnp.float32) + 1.0) / warmup_steps
    return jnp.where(t < warmup_steps, warm, cosine_lr(t - warmup_steps, span - warmup_steps, lr, lr_min))


def clip_grad_norm(grads, max_norm: float):
    """torch.nn.utils.clip_grad_norm_: scale by max_norm / (norm + 1e-6) when that is below 1."""
    if not max_norm:
        return grads, jnp.sqrt(sum(jnp.sum(g * g) for g in jax.tree.leaves(grads)))
    norm = jnp.sqrt(sum(jnp.sum(g * g) for g in jax.tree.leaves(grads)))
    coef = jnp.minimum(max_norm / (norm + 1e-6), 1.0)
    return jax.tree.map(lambda g: g * coef, grads), norm


def loss_and_grads(graphdef, params, stats, images, labels, arch=None, *, wrt="params", host=None):
    """((loss, (accuracy, new stats)), grads) of the mean cross-entropy.

    `arch` (a `jaxnas.spaces.arch` container; None for a network of one fixed architecture) goes to
    the forward; grads are w.r.t. the parameters (`wrt="params"`) or the relaxed architecture
    (`wrt="arch"`, e.g. `Weights`; the gradient in the same container). `host`: the network's host
    passes, used outside jit with a concrete `arch`.
    """
    if host is not None:
        if wrt == "params":
            return host.value_and_grad(graphdef, params, stats, images, labels, arch)
        return host.weights_value_and_grad(graphdef, params, stats, images, labels, arch)
    def loss_fn(p, a):
        args = () if a is None else (a,)
        logits, new_stats = apply(graphdef, p, stats, images, *args, train=True)
        loss, acc = loss_and_accuracy(logits, labels)
        return loss, (acc, new_stats)

    if wrt == "params":
        return jax.value_and_grad(lambda p: loss_fn(p, arch), has_aux=True)(params)
    return jax.value_and_grad(lambda a: loss_fn(params, a), has_aux=True)(arch)


def update(tx, grad_clip: float, params, opt_state, grads, lr, used=None):
    """Clip, then the optimizer's update at learning rate `lr`, of any parameter tree (the weights,
    or the weights with a method's own parameters, e.g. PGNAS's drop logits): (params, opt_state,
    gradient norm before clipping)."""
    grads, gnorm = clip_grad_norm(grads, grad_clip)
    updates, opt_state = tx.update(grads, with_learning_rate(opt_state, lr), params, used=used)
    return optax.apply_updates(params, updates), opt_state, gnorm


def apply_gradients(tx, grad_clip: float, state, grads, stats, lr, used=None):
    """`update` of the state's weights, and the new BatchNorm statistics."""
    params, opt_state, gnorm = update(tx, grad_clip, state.params, state.opt_state, grads, lr, used)
    return state.replace(params=params, stats=stats, opt_state=opt_state), gnorm


def weight_step(tx, grad_clip: float, graphdef, state, images, labels, lr, arch=None, *, used=None,
                host=None):
    """One training step of the weights: cross-entropy, gradient clip, optimizer; BN statistics
    updated. With `host` (call it outside jit) the update is one jitted call with the state
    donated. Returns (new_state, metrics)."""
    (loss, (acc, stats)), grads = loss_and_grads(graphdef, state.params, state.stats, images, labels, arch,
                                                 host=host)
    if host is None:
        new, gnorm = apply_gradients(tx, grad_clip, state, grads, stats, lr, used)
    else:
        # Which leaves hold real gradients and which shared zeros changes with the architecture; jit
        # keys its cache on placement, so give every leaf the placement of its state leaf or the
        # update recompiles at almost every step (session 3: the demo took 3 min 41 s instead of 52 s).
        grads, used = (None if t is None else jax.device_put(t, _placement(state.params)) for t in (grads,
                                                                                                    used))
        stats = jax.device_put(stats, _placement(state.stats))
        new, gnorm = _jitted_update(tx, grad_clip, state, grads, stats, lr, used)
    return new, {"loss": loss, "acc": acc, "grad_norm": gnorm}


def _placement(tree):
    return jax.tree.map(lambda x: x.sharding, tree)


# tx (optim.sgd's cached objects) and grad_clip are hashable: one compilation per setting
_jitted_update = cpu_kernels.jit(apply_gradients, static_argnums=(0, 1), donate_argnums=2)
