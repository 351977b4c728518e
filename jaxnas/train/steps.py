"""Pure pieces of a weight step: PyTorch-exact SGD, gradient clipping, cosine learning rate.

SGD follows torch.optim.SGD (weight decay added to the gradient, momentum buffer without dampening,
Nesterov). Parameters of ops not sampled in a step: since PyTorch 2.0, `zero_grad()` sets
gradients to None and SGD skips such parameters entirely (no momentum, no decay); before 2.0 it
zeroed them, so they still moved by momentum and decay. `decay_unsampled` selects the old
behaviour; the default (False) follows current PyTorch.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxnas import cpu_kernels


def cosine_lr(step, total_steps: int, lr: float, lr_min: float):
    """Cosine annealing from `lr` at step 0 to `lr_min` at `total_steps`, per step."""
    t = jnp.minimum(step, total_steps) / max(total_steps, 1)
    return lr_min + 0.5 * (lr - lr_min) * (1.0 + jnp.cos(jnp.pi * t))


def clip_grad_norm(grads, max_norm: float):
    """torch.nn.utils.clip_grad_norm_: scale by max_norm / (norm + 1e-6) when that is below 1."""
    if not max_norm:
        return grads, jnp.sqrt(sum(jnp.sum(g * g) for g in jax.tree.leaves(grads)))
    norm = jnp.sqrt(sum(jnp.sum(g * g) for g in jax.tree.leaves(grads)))
    coef = jnp.minimum(max_norm / (norm + 1e-6), 1.0)
    return jax.tree.map(lambda g: g * coef, grads), norm


def sgd(params, momentum, grads, lr, *, mu: float, nesterov: bool, weight_decay: float, used=None):
    """One torch.optim.SGD step. `used` (bool tree or None) marks parameters that took part;
    the others keep their value and momentum buffer (PyTorch >= 2.0 with gradients set to None)."""
    def one(p, buf, g, u):
        d = g + weight_decay * p
        new_buf = mu * buf + d
        step = d + mu * new_buf if nesterov else new_buf
        new_p = p - lr * step
        if u is None:
            return new_p, new_buf
        return jnp.where(u, new_p, p), jnp.where(u, new_buf, buf)

    used = jax.tree.map(lambda _: None, params) if used is None else used
    out = jax.tree.map(one, params, momentum, grads, used, is_leaf=lambda x: x is None)
    new_params = jax.tree.map(lambda _, o: o[0], params, out)
    new_momentum = jax.tree.map(lambda _, o: o[1], params, out)
    return new_params, new_momentum


def apply_gradients(cfg, state, grads, stats, lr, used=None):
    """Clip, SGD, and the new BatchNorm statistics: the update half of a weight step."""
    grads, gnorm = clip_grad_norm(grads, cfg.grad_clip)
    params, momentum = sgd(state.params, state.momentum, grads, lr, mu=cfg.momentum, nesterov=cfg.nesterov,
                           weight_decay=cfg.weight_decay, used=used)
    return state.replace(params=params, stats=stats, momentum=momentum), gnorm


def weight_step(cfg, graphdef, state, images, labels, lr, *forward_args, used=None, **forward_kw):
    """One training step of the weights: cross-entropy, gradient clip, SGD; BN statistics updated.

    `forward_args` / `forward_kw` go to the network after the images (e.g. the architecture and mode
    of a supernet). Returns (new_state, metrics).
    """
    from jaxnas.nn import apply

    def forward(params):
        return apply(graphdef, params, state.stats, images, *forward_args, train=True, **forward_kw)

    (loss, (acc, stats)), grads = _value_and_grad(forward, state.params, labels)
    new, gnorm = apply_gradients(cfg, state, grads, stats, lr, used)
    return new, {"loss": loss, "acc": acc, "grad_norm": gnorm}


def eager_weight_step(cfg, graphdef, state, images, labels, lr, arch, used=None):
    """`weight_step` of a supernet for a concrete single-path `arch`, through `jaxnas.spaces.nb201.eager`:
    one compiled kernel per module and a tape for the reverse pass (fast convolution gradients on
    XLA:CPU), then a jitted update (state donated). Call it outside jit. Same result as `weight_step` up to float rounding."""
    from jaxnas.spaces.nb201 import eager

    (loss, (acc, stats)), grads = eager.value_and_grad(graphdef, state.params, state.stats, images, labels, arch)
    # Which leaves hold real gradients and which shared zeros changes with the architecture; jit
    # keys its cache on placement, so give every leaf the placement of its state leaf or the
    # update recompiles at almost every step (session 3: the demo took 3 min 41 s instead of 52 s).
    grads, used = (None if t is None else jax.device_put(t, _placement(state.params)) for t in (grads, used))
    stats = jax.device_put(stats, _placement(state.stats))
    new, gnorm = _jitted_update(cfg, state, grads, stats, lr, used)
    return new, {"loss": loss, "acc": acc, "grad_norm": gnorm}


def _value_and_grad(forward, params, labels):
    """((loss, (acc, new stats)), grads) of the cross-entropy of `forward(params)` -> (logits, stats)."""
    from jaxnas.nn import loss_and_accuracy

    def loss_fn(p):
        logits, stats = forward(p)
        loss, acc = loss_and_accuracy(logits, labels)
        return loss, (acc, stats)

    return jax.value_and_grad(loss_fn, has_aux=True)(params)


def _placement(tree):
    return jax.tree.map(lambda x: x.sharding, tree)


_jitted_update = cpu_kernels.jit(apply_gradients, static_argnums=0, donate_argnums=1)  # Config is frozen, hashable
