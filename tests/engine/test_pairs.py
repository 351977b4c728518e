"""NSE's pair estimator (`jaxnas.search.pairs`) against direct computations: the pattern law, the
pair sampler's law (two draws without replacement), and the gradient of the straight-through pair
against the closed form of docs/nse-reference.md section 4, in float64 by hand."""
import itertools

import jax
import jax.numpy as jnp
import numpy as np

from jaxnas.search import pairs


def test_pattern_log_probs_are_the_product_law_with_its_exclusions():
    p = np.array([0.2, 0.7, 0.5])
    slots = np.array([True, True, False])
    got = np.exp(np.asarray(pairs.pattern_log_probs(jnp.asarray(p), jnp.asarray(slots), True)))
    for i, pat in enumerate(pairs.patterns(3)):
        if pat[2] or not pat.any():
            want = 0.0
        else:
            want = np.prod([p[j] if pat[j] else 1 - p[j] for j in range(2)])
        assert got[i] == np.float32(want) or abs(got[i] - want) < 1e-6, (pat, got[i], want)


def test_sample_pair_draws_two_distinct_patterns_without_replacement():
    logp = jnp.log(jnp.asarray([0.1, 0.2, 0.3, 0.4]))
    keys = jax.random.split(jax.random.key(0), 40000)
    pairs_ = np.asarray(jax.vmap(lambda k: pairs.sample_pair(k, logp))(keys))
    assert (pairs_[:, 0] != pairs_[:, 1]).all()
    P = np.array([0.1, 0.2, 0.3, 0.4])
    for s, u in itertools.permutations(range(4), 2):
        want = P[s] * P[u] / (1 - P[s])
        got = np.mean((pairs_[:, 0] == s) & (pairs_[:, 1] == u))
        assert abs(got - want) < 0.01, (s, u, got, want)


def test_the_pair_gradient_is_the_closed_form():
    """d L / d alpha_j = (<G, y_s> - <G, y_u>) q_s q_u (s_j - u_j) dlog-odds_j / dalpha_j, with
    p = sigmoid(alpha) 0.999 + 5e-4; operators gated alike in s and u get none."""
    alpha = jnp.asarray([0.3, -1.2, 0.8, 0.0])
    slots = jnp.asarray([True, True, True, False])
    s_i, u_i = 0b0101, 0b0011   # s gates slots 0, 2; u gates slots 0, 1 (slot 0 alike in both)
    rng = np.random.default_rng(0)
    y_s, y_u, G = (rng.normal(size=5) for _ in range(3))

    def loss(a):
        p = jax.nn.sigmoid(a) * 0.999 + 5e-4
        logp = pairs.pattern_log_probs(p, slots, True)
        q_s, q_u = pairs.pair_weights(logp, jnp.asarray([s_i, u_i]))
        return jnp.dot(jnp.asarray(G), pairs.straight_through(jnp.asarray(y_s), jnp.asarray(y_u), q_s, q_u))

    value, grad = jax.value_and_grad(loss)(alpha)
    assert float(value) == np.float32(np.dot(G, y_s)) or abs(float(value) - np.dot(G, y_s)) < 1e-5
    a = np.asarray(alpha, np.float64)
    sig = 1 / (1 + np.exp(-a))
    p = sig * 0.999 + 5e-4
    pat = pairs.patterns(4)
    P = lambda i: np.prod([p[j] if pat[i][j] else 1 - p[j] for j in range(3)])  # noqa: E731 slot 3 empty
    q_s, q_u = P(s_i) / (P(s_i) + P(u_i)), P(u_i) / (P(s_i) + P(u_i))
    want = (np.dot(G, y_s) - np.dot(G, y_u)) * q_s * q_u * (pat[s_i].astype(float) - pat[u_i])
    want *= 0.999 * sig * (1 - sig) / (p * (1 - p))
    want[3] = 0.0
    np.testing.assert_allclose(np.asarray(grad), want, rtol=1e-4, atol=1e-7)
    # slot 0, gated in both, gets none up to float32 rounding; slot 3, holding no operator, none at all
    assert abs(float(grad[0])) < 1e-6 * float(jnp.abs(grad).max()) + 1e-7 and float(grad[3]) == 0.0
