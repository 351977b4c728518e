"""Concrete-dropout gates of PGNAS, as pure JAX functions.

PGNAS (Zhou et al., "One-Shot Neural Architecture Search Through A Posteriori Distribution Guided Sampling",
AAAI 2020, arXiv 1906.09557) trains a supernet whose gates are concrete-dropout variables with one learned
drop probability p per gate group, then samples candidate sub-networks from Bernoulli(p).
The reference layer is `Conv2d_with_CD` in scenarios/PGNAS,
Pytorch-backbone-imagenet/pytorch_model_zoo/NAS_utils/ops.py ("ops.py" below).

Conventions (those of ops.py):
- `p_logit` holds logit(p), p = sigmoid(p_logit) the DROP probability of a gate group; initialised at
  logit(0.1).
- Training: a relaxed drop value in (0, 1), one draw per example, and the gated input is x * (1 - drop),
  with no 1/(1 - p) rescaling (ops.py `_concrete_dropout`); Gal's rescaling is available as an option.
- Search: a hard keep-mask 1 - floor(u + p) with u ~ U(0, 1) drawn once per candidate and shared over the
  candidate's whole validation pass (ops.py deterministic mode, `unif_noise_variable`).

Everything follows the dtype of `p_logit` (float32 or float64); constants are Python scalars, so nothing
mixes dtypes under strict promotion. All functions are jittable and vmappable.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp

EPS = 1e-8  # ops.py `self._eps`
TAU = 0.2  # ops.py `self._temp = 1. / 5.`; paper supplement: tau = 0.2
P_INIT = 0.1  # ops.py `p_init=1e-1`; paper supplement: p_init 0.1


def init_logit(shape=(), p: float = P_INIT, dtype=jnp.float32):
    """p_logit array of `shape` filled with logit(p) (ops.py: log(p_init) - log(1 - p_init))."""
    return jnp.full(shape, math.log(p) - math.log1p(-p), dtype)


def drop_prob(p_logit):
    """p = sigmoid(p_logit): the probability that a gate drops its group."""
    return jax.nn.sigmoid(p_logit)


def keep_prob(p_logit):
    """1 - p, computed as sigmoid(-p_logit) so it stays accurate when p is close to 1."""
    return jax.nn.sigmoid(-p_logit)


def _log_neg_log(u):
    """log(-log u) as ops.py computes it, log(-log(u + eps) + eps), with -log(u + eps) clamped at 0.

    The clamp only acts for u > 1 - eps (where u + eps > 1): there ops.py takes the log of eps minus a
    number close to eps, which is tiny, dtype-dependent, and could be <= 0 (NaN) in float64. With the clamp
    the value there is log(eps) in every dtype. For u = 0 the inner log is log(eps), so no -inf either.
    """
    return jnp.log(jnp.maximum(-jnp.log(u + EPS), 0.0) + EPS)


def relaxed_drop(p_logit, u1, u2, tau: float = TAU):
    """Relaxed (concrete) drop value in (0, 1) for uniform noises u1, u2 (same dtype as p_logit).

    drop = sigmoid((logit p + log(-log u1) - log(-log u2)) / tau)   (ops.py `_concrete_dropout`).
    log(-log u1) - log(-log u2) is a difference of two Gumbels, i.e. Logistic(0, 1) noise, so as tau -> 0
    drop -> Bernoulli(p). The paper's Eq. 16 writes the same relaxation with the roles of the two noises
    swapped, which is the same distribution. logit p is taken as log(p + eps) - log(1 - p + eps), as ops.py
    does, with 1 - p computed as sigmoid(-p_logit); the eps bounds it to about +-18.4. The caller draws
    u1, u2 (broadcastable against p_logit), so tests can inject the noise.
    """
    logit = jnp.log(drop_prob(p_logit) + EPS) - jnp.log(keep_prob(p_logit) + EPS)
    return jax.nn.sigmoid((logit + _log_neg_log(u1) - _log_neg_log(u2)) / tau)


def sample_relaxed_drop(key, p_logit, shape, tau: float = TAU):
    """Draw u1, u2 ~ U(0, 1) of `shape` in p_logit's dtype and return `relaxed_drop`.

    `shape` broadcasts against p_logit. During training draw one mask per example, shape
    (batch, *p_logit.shape), as ops.py does (noise shape (batch, C_in, 1, 1)).
    """
    p_logit = jnp.asarray(p_logit)
    k1, k2 = jax.random.split(key)
    u1 = jax.random.uniform(k1, shape, p_logit.dtype)
    u2 = jax.random.uniform(k2, shape, p_logit.dtype)
    return relaxed_drop(p_logit, u1, u2, tau)


def apply_gate(x, drop, p_logit=None):
    """Gate x by a drop value (relaxed, or 1 - a hard keep-mask): x * (1 - drop).

    ops.py multiplies the conv input by (1 - drop) with no rescaling, so activations shrink by (1 - p) in
    expectation; that is the default here. Passing `p_logit` applies Gal's concrete-dropout rescaling,
    x * (1 - drop) / (1 - p), which keeps the expectation equal to x. `drop` and `p_logit` must broadcast
    against x (the caller reshapes them, e.g. to (batch, 1, 1, C) for NHWC activations).
    """
    gated = x * (1 - drop)
    return gated if p_logit is None else gated / keep_prob(p_logit)


def regulariser(p_logit, weights_sq_sum, in_channels, length_scale_sq, n_train):
    """PGNAS KL term: (l^2/N) sum_g (1 - p_g) ||w_g||^2 + (1/N) sum_g k_g [p_g log p_g + (1-p_g) log(1-p_g)].

    g runs over the gate groups (the entries of p_logit). `weights_sq_sum` (shaped like p_logit) holds
    ||w_g||^2, the squared norm of the weights group g gates (computed by the caller, so gradients flow to
    the weights through it); `in_channels` is k_g, the input channels of the group (scalar or array like
    p_logit); `length_scale_sq` is the prior length-scale l^2; `n_train` is N, the (effective) number of
    training examples.

    The paper's Eq. 14/15 has l^2 (1 - p)/(2N) ||m||^2 and (1/N) k p log p. This follows the reference
    code instead (ops.py `KLreg`, with weight_reg = l^2 and drop_reg = 1): no 1/2 on the weight term and the
    full negative binary entropy p log p + (1 - p) log(1 - p). ops.py sums that entropy per input channel,
    which is k_g times the group's entropy. The logs are taken from the logit (log_sigmoid), so no eps or
    clamp is needed: p log p -> 0 as p -> 0 with no NaN, in value and gradient.
    """
    p_logit = jnp.asarray(p_logit)
    dtype = p_logit.dtype
    p, q = drop_prob(p_logit), keep_prob(p_logit)
    k = jnp.asarray(in_channels, dtype)
    scale_w = jnp.asarray(length_scale_sq, dtype) / jnp.asarray(n_train, dtype)
    neg_entropy = p * jax.nn.log_sigmoid(p_logit) + q * jax.nn.log_sigmoid(-p_logit)
    weight_term = scale_w * jnp.sum(q * weights_sq_sum)
    entropy_term = jnp.sum(k * neg_entropy) / jnp.asarray(n_train, dtype)
    return weight_term + entropy_term


def deterministic_mask(p_logit, u):
    """Hard keep-mask of a candidate: 1 - floor(u + p), 1 = keep, 0 = drop (ops.py deterministic mode).

    For u ~ U(0, 1), floor(u + p) = 1 exactly when u >= 1 - p, so P(drop) = p. u is drawn once per
    candidate and gate and shared across the candidate's whole validation pass (the reference stores it
    as a non-trainable buffer), unlike training, which draws per example. Returns a float mask in
    p_logit's dtype; it has zero gradient and is meant for search, not training.
    """
    return 1 - jnp.floor(u + drop_prob(p_logit))


def sample_candidate_masks(key, p_logit, num: int):
    """`num` candidate keep-masks, shape (num, *p_logit.shape): one u ~ U(0, 1) per (candidate, gate)."""
    p_logit = jnp.asarray(p_logit)
    u = jax.random.uniform(key, (num, *p_logit.shape), p_logit.dtype)
    return deterministic_mask(p_logit, u)
