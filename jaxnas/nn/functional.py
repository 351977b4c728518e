"""Flax NNX used functionally: split a module into (graphdef, params, stats), apply as a pure function.

States are pure pytrees of arrays (no Variable objects), so they jit, vmap, shard and checkpoint
like any pytree. BatchNorm statistics are kept apart from the trainable parameters so candidates can carry
their own statistics (BN recalibration) and optimizers only ever see `params`.
"""
from __future__ import annotations

import jax
import optax
from flax import nnx


def split(module: nnx.Module):
    """module -> (graphdef, params, stats); stats holds the BatchNorm running statistics."""
    graphdef, params, stats = nnx.split(module, nnx.Param, nnx.BatchStat)
    return graphdef, nnx.as_pure(params), nnx.as_pure(stats)


def apply(graphdef, params, stats, *args, **kwargs):
    """Run the module's forward purely: returns (output, new_stats)."""
    module = nnx.merge(graphdef, params, stats, copy=True)
    out = module(*args, **kwargs)
    return out, nnx.as_pure(nnx.state(module, nnx.BatchStat))


def count_params(params) -> int:
    """Number of trainable scalars in a params state."""
    return sum(x.size for x in jax.tree.leaves(params))


def loss_and_accuracy(logits, labels):
    """Mean cross-entropy and top-1 accuracy (fraction) of a batch."""
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    acc = (logits.argmax(-1) == labels).mean()
    return loss, acc


def straight_through(y_s, y_u, q_s, q_u):
    """y_s in value; the gradient of q_s and q_u as through y_s q_s + y_u q_u: NSE's pair estimator
    (orashi/NSE_NAS utils/supernet_utils.py su:1237-1238; `jaxnas.search.pairs`)."""
    sg = jax.lax.stop_gradient
    return y_s * (q_s + 1 - sg(q_s)) + sg(y_u) * (q_u - sg(q_u))
