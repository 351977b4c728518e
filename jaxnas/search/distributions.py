"""Distributions over architectures: a categorical choice per decision.

A categorical distribution over a space whose architecture is one choice per decision (NB201:
`int32[6]`, an op per edge) is a logits array `float[D, O]` (D decisions, O options each): each
decision independently picks option o with probability softmax(logits[d])[o]. SETN's evaluator
(alpha) is one. `allowed` (bool like the logits, e.g. a space state's `ops`) restricts it to the
options still kept. Everything here is traceable except `categorical_top_k`, which picks k on the
host (a static size).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np


def categorical_log_prob(logits, choices):
    """Log-probability of architectures: sum_d log_softmax(logits)[d, choices[..., d]].

    logits: float[D, O]; choices: int[..., D]. Returns float[...] (e.g. [K] for [K, D], [] for [D]).
    """
    logp = jax.nn.log_softmax(logits, axis=-1)
    return logp[jnp.arange(logits.shape[0]), choices].sum(-1)


def categorical_sample(key, logits, k: int, allowed=None):
    """k architectures drawn independently: each decision's option ~ softmax(logits[d]) over its
    `allowed` options (all when None); int32[k, D]."""
    logits = logits if allowed is None else jnp.where(allowed, logits, -jnp.inf)
    return jax.random.categorical(key, logits, axis=-1, shape=(k, logits.shape[0])).astype(jnp.int32)


@functools.partial(jax.jit, static_argnames="k")
def _top_k(logits, choices, ok, k: int):
    scores = jnp.where(ok, categorical_log_prob(logits, choices), -jnp.inf)
    scores, idx = jax.lax.top_k(scores, k)
    return choices[idx], scores


def categorical_top_k(logits, choices, k: int, allowed=None):
    """The k architectures of highest log-probability among `choices` (int[N, D], e.g. a space's
    `enumerate()`) and their log-probabilities (float[k]), best first; ties keep the order of
    `choices`. `allowed` (bool[D, O]): only architectures whose every choice is allowed; k is
    capped at their number (at N without `allowed`)."""
    n, d = np.shape(choices)
    if allowed is None:
        ok = np.ones(n, bool)
    else:
        ok = np.asarray(allowed, bool)[np.arange(d), np.asarray(choices)].all(-1)
    return _top_k(logits, choices, jnp.asarray(ok), k=min(int(k), int(ok.sum())))
