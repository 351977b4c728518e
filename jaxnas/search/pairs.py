"""NSE's pair estimator of a multi-branch cell's gate distribution (Ci et al., ICCV 2021;
orashi/NSE_NAS utils/supernet_utils.py su:1010-1117, 1209-1249; docs/nse-reference.md section 4).

A cell's K operators are each gated on with probability p_j (a product of Bernoullis). The
architecture step draws two distinct gate patterns s, u from that distribution (without
replacement), renormalises their probabilities over the pair, q_s = P(s) / (P(s) + P(u)), and
runs the cell as y_s (q_s + 1 - sg q_s) + y_u (q_u - sg q_u): the forward value is y_s, and the
gradient reaches p through the pair's renormalised probabilities (the renormaliser is not
detached, as in the reference). Patterns are enumerated over K fixed slots (2^K, K <= 5 in NSE);
a slot that holds no operator, and the empty pattern where a cell must run one, have probability 0.
Two draws by the Gumbel top-2 of the log-probabilities are exactly sequential sampling without
replacement, the reference's law for K <= 5 (and, by its rejection, for K > 5).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxnas.nn.functional import straight_through  # noqa: F401  (the pair's forward; nn: the networks use it)


def patterns(k: int) -> np.ndarray:
    """bool[2^k, k]: every gate pattern of k slots; row i gates slot j on when bit j of i is set."""
    return (np.arange(2 ** k)[:, None] >> np.arange(k)[None, :]) & 1 == 1


def pattern_log_probs(p, slots, nonempty):
    """float[..., 2^K]: log P(pattern) under independent gates p[..., K] (probability 0 for a
    pattern using a slot where `slots` is False, and for the empty pattern where `nonempty`)."""
    pat = jnp.asarray(patterns(p.shape[-1]))
    logp = jnp.where(pat, jnp.log(p)[..., None, :], jnp.log1p(-p)[..., None, :])
    logp = jnp.where(pat & ~slots[..., None, :], -jnp.inf, jnp.where(~slots[..., None, :], 0.0, logp))
    empty = ~(pat & slots[..., None, :]).any(-1)
    return jnp.where(empty & jnp.asarray(nonempty)[..., None], -jnp.inf, logp.sum(-1))


def sample_pair(key, logp):
    """int[..., 2]: two distinct pattern indices, the first ~ P, the second ~ P without the first."""
    g = jax.random.gumbel(key, logp.shape) + logp
    return jax.lax.top_k(g, 2)[1]


def pair_weights(logp, pair):
    """(q_s, q_u): the pair's probabilities renormalised over the pair (differentiable in logp)."""
    both = jnp.take_along_axis(logp, pair, -1)
    q = jax.nn.softmax(both, -1)
    return q[..., 0], q[..., 1]
