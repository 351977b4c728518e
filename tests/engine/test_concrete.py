"""jaxnas.search.concrete against plain float64 computations written in this file from the definitions of
PGNAS's concrete-dropout layer (scenarios/PGNAS, Pytorch-backbone-imagenet/pytorch_model_zoo/NAS_utils/ops.py,
`Conv2d_with_CD`): per example and per gate, with `math`, never calling the module for the oracle."""
import contextlib
import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnas.search import concrete as cd

EPS = 1e-8
TAU = 0.2


# ---------------------------------------------------------------- plain oracles (float64, math, loops)

def _sig(z):
    return 1 / (1 + math.exp(-z)) if z >= 0 else math.exp(z) / (1 + math.exp(z))


def _log_neg_log(u):
    # ops.py: log(-log(u + eps) + eps), with -log(u + eps) clamped at 0 (acts only for u > 1 - eps)
    return math.log(max(-math.log(u + EPS), 0.0) + EPS)


def _drop(z, u1, u2, tau=TAU):
    p, q = _sig(z), _sig(-z)  # q = 1 - p
    return _sig((math.log(p + EPS) - math.log(q + EPS) + _log_neg_log(u1) - _log_neg_log(u2)) / tau)


def _drop_dz(z, u1, u2, tau=TAU):
    """Analytic d drop / d p_logit: drop (1 - drop) / tau * d/dz [log(p + eps) - log(1 - p + eps)]."""
    p, q, d = _sig(z), _sig(-z), _drop(z, u1, u2, tau)
    return d * (1 - d) / tau * (p * q / (p + EPS) + p * q / (q + EPS))


def _gate_loss(z, u1, u2, x, c):
    """sum over examples i and gates g of (1 - drop_ig) x_ig c_g."""
    return sum((1 - _drop(z[g], u1[i][g], u2[i][g])) * x[i][g] * c[g]
               for i in range(len(x)) for g in range(len(z)))


SPLIT = [3, 2, 2]  # input channels of each gate group (ops.py `split_pattern`)
L2, N = 50.0, 1000.0


def _kl(z, W):
    """ops.py `KLreg` per input channel c (p_c = p of c's group), weight_reg = l^2, drop_reg = 1."""
    group = [g for g, k in enumerate(SPLIT) for _ in range(k)]
    out = 0.0
    for c, g in enumerate(group):
        p = _sig(z[g])
        out += L2 / N * (1 - p) * sum(float(w) ** 2 for w in W[:, c].ravel())
        out += (p * math.log(p) + (1 - p) * math.log(1 - p)) / N
    return out


def _fd(f, x, h):
    """Central finite differences of scalar f at the float64 array x, entry by entry."""
    x = np.array(x, np.float64)
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[i] += h
        xm[i] -= h
        g[i] = (f(xp) - f(xm)) / (2 * h)
    return g


def _x64(dtype):
    return jax.enable_x64(True) if dtype == np.float64 else contextlib.nullcontext()


# ---------------------------------------------------------------- relaxed drop

Z_GRID = [-30.0, math.log(1e-6 / (1 - 1e-6)), -2.2, 0.0, 1.3, math.log((1 - 1e-6) / 1e-6), 30.0]
U_GRID = [0.0, 1e-12, 1e-3, 0.3, 0.7, 0.999, 1 - 1e-12, 1.0]


def test_relaxed_drop_values_float64():
    """Every (p, u1, u2) of a grid with p near 0 and 1 and u at 0, near 0, near 1 and 1: equal to the
    oracle to 1e-12 and never NaN."""
    zs, u1s, u2s = (np.array(a, np.float64) for a in zip(*[(z, a, b) for z in Z_GRID for a in U_GRID
                                                               for b in U_GRID]))
    with jax.enable_x64(True):
        got = np.asarray(jax.jit(cd.relaxed_drop)(jnp.asarray(zs), jnp.asarray(u1s), jnp.asarray(u2s)))
    assert got.dtype == np.float64 and np.isfinite(got).all()
    want = np.array([_drop(z, a, b) for z, a, b in zip(zs, u1s, u2s)])
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


def test_relaxed_drop_values_float32():
    """float32 against the float64 oracle of the float32-rounded inputs, to 2e-5 (observed 5e-7; the bound
    allows for u = 0.999, where u + 1e-8 rounds to u in float32: log(-log u) moves by ~1e-5, the logit by
    ~5e-5 after / tau, drop by <= 1.3e-5). u within 1e-6 of 1 (but not 1) is left out: there eps = 1e-8 is
    below float32 resolution, so float32 (like the float32 reference) gives a different, still finite,
    value."""
    grid = [u for u in U_GRID if not 0 < 1 - u < 1e-6]
    zs, u1s, u2s = (np.array(a, np.float32) for a in zip(*[(z, a, b) for z in Z_GRID for a in grid
                                                               for b in grid]))
    got = np.asarray(cd.relaxed_drop(jnp.asarray(zs), jnp.asarray(u1s), jnp.asarray(u2s)))
    assert got.dtype == np.float32 and np.isfinite(got).all()
    want = np.array([_drop(float(z), float(a), float(b)) for z, a, b in zip(zs, u1s, u2s)])
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-5)
    # at u = 1 exactly both dtypes take the clamped value log(eps)
    one = jnp.ones((), jnp.float32)
    assert np.isfinite(float(cd.relaxed_drop(jnp.zeros((), jnp.float32), one, one)))


def test_relaxed_drop_gradient():
    """d/d p_logit of sum_i sum_g (1 - drop_ig) x_ig c_g: float64 against the analytic derivative (1e-9) and a
    central finite difference of the oracle (h = 1e-6; 1e-6 relative + 1e-8 absolute, the difference's
    rounding error being about 1e-16 * |loss| / h ~ 1e-9); float32 against analytic (1e-3 relative)."""
    rng = np.random.default_rng(0)
    B, G = 5, 4
    z = np.array([-2.5, -0.3, 0.8, 2.0])
    u1, u2 = rng.uniform(size=(B, G)), rng.uniform(size=(B, G))
    x, c = rng.normal(size=(B, G)), rng.normal(size=G)

    def loss(zj, u1j, u2j, xj, cj):
        return jnp.sum((1 - cd.relaxed_drop(zj, u1j, u2j)) * xj * cj)

    analytic = np.array([-sum(_drop_dz(z[g], u1[i, g], u2[i, g]) * x[i, g] * c[g] for i in range(B))
                         for g in range(G)])
    fd = _fd(lambda zz: _gate_loss(zz, u1, u2, x, c), z, 1e-6)
    np.testing.assert_allclose(fd, analytic, rtol=1e-6, atol=1e-8)
    with jax.enable_x64(True):
        got = np.asarray(jax.jit(jax.grad(loss))(*map(jnp.asarray, (z, u1, u2, x, c))))
    np.testing.assert_allclose(got, analytic, rtol=1e-9)
    np.testing.assert_allclose(got, fd, rtol=1e-6, atol=1e-8)
    got32 = np.asarray(jax.grad(loss)(*(jnp.asarray(a, jnp.float32) for a in (z, u1, u2, x, c))))
    assert got32.dtype == np.float32
    np.testing.assert_allclose(got32, analytic, rtol=1e-3, atol=1e-4 * np.abs(analytic).max())


def test_relaxed_drop_vmaps():
    """vmap over a batch of p_logit vectors (under jit) equals the calls row by row."""
    rng = np.random.default_rng(1)
    z = jnp.asarray(rng.normal(size=(3, 5)), jnp.float32)
    u1, u2 = (jnp.asarray(rng.uniform(size=(3, 5)), jnp.float32) for _ in range(2))
    got = jax.jit(jax.vmap(cd.relaxed_drop))(z, u1, u2)
    want = jnp.stack([cd.relaxed_drop(z[i], u1[i], u2[i]) for i in range(3)])
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_training_mask_distribution(p):
    """Mean of relaxed_drop over 200k draws at tau = 0.05 is p within 4 Monte-Carlo sigmas + 1e-3.
    The 1e-3 covers the relaxation bias E[sigmoid(L/tau)] - P(L > 0), L ~ Logistic(logit p, 1), which is
    about tau^2 pi^2/6 * |f'(0)| <= 4e-4 at tau = 0.05 (f the logistic density; checked numerically:
    max 3.9e-4 over p). The hard fraction P(drop > 1/2) has no bias and must be p within 4 sigmas."""
    n = 200_000
    z = cd.init_logit((2,), p=p)
    drop = np.asarray(jax.jit(cd.sample_relaxed_drop, static_argnums=2)(jax.random.key(3), z, (n, 2), 0.05),
                      np.float64)
    assert drop.shape == (n, 2)
    sigma = drop.std(0) / math.sqrt(n)
    assert np.all(np.abs(drop.mean(0) - p) < 4 * sigma + 1e-3), (drop.mean(0), p)
    hard = (drop > 0.5).mean(0)
    assert np.all(np.abs(hard - p) < 4 * math.sqrt(p * (1 - p) / n)), (hard, p)


def test_per_example_draws_differ():
    """shape (batch, *p_logit.shape) gives one mask per example: all rows distinct, values in (0, 1)."""
    z = cd.init_logit((6,))
    drop = np.asarray(cd.sample_relaxed_drop(jax.random.key(0), z, (8, 6)))
    assert drop.shape == (8, 6) and ((drop > 0) & (drop < 1)).all()
    assert len({row.tobytes() for row in drop}) == 8


# ---------------------------------------------------------------- regulariser

def _regulariser_inputs(dtype):
    rng = np.random.default_rng(2)
    z = np.array([-2.0, 0.4, 1.5])
    W = rng.normal(size=(4, sum(SPLIT), 3, 3))
    return z.astype(dtype), W.astype(dtype)


def _reg_loss(z, W):
    bounds = np.cumsum([0] + SPLIT)
    wsq = jnp.stack([jnp.sum(W[:, a:b] ** 2) for a, b in itertools.pairwise(bounds)])
    return cd.regulariser(z, wsq, jnp.asarray(SPLIT), L2, N)  # int k: cast explicitly inside


def test_regulariser_value_and_gradients_float64():
    """Value equals ops.py's per-channel KLreg form to 1e-12 relative; gradients w.r.t. p_logit and every
    weight equal central differences of the oracle (h = 1e-6) to 1e-6 relative (+1e-12 absolute)."""
    z, W = _regulariser_inputs(np.float64)
    with jax.enable_x64(True):
        val, (gz, gW) = jax.jit(jax.value_and_grad(_reg_loss, argnums=(0, 1)))(jnp.asarray(z), jnp.asarray(W))
    assert val.dtype == jnp.float64
    np.testing.assert_allclose(float(val), _kl(z, W), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(gz), _fd(lambda zz: _kl(zz, W), z, 1e-6), rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(np.asarray(gW), _fd(lambda ww: _kl(z, ww), W, 1e-6), rtol=1e-6, atol=1e-12)


def test_regulariser_float32_and_extremes():
    """float32 value within 1e-5 relative of the oracle; p_logit at +-40 (p rounds to 0 or 1) gives finite
    values and gradients in both dtypes."""
    z, W = _regulariser_inputs(np.float32)
    val = _reg_loss(jnp.asarray(z), jnp.asarray(W))
    assert val.dtype == jnp.float32
    np.testing.assert_allclose(float(val), _kl(z.astype(np.float64), W.astype(np.float64)), rtol=1e-5)
    for dtype in (np.float32, np.float64):
        with _x64(dtype):
            zz = jnp.asarray([-40.0, 40.0, 0.0], dtype)
            v, g = jax.value_and_grad(cd.regulariser)(zz, jnp.ones(3, dtype), 3, L2, N)
            assert v.dtype == dtype and np.isfinite(float(v)) and np.isfinite(np.asarray(g)).all()


# ---------------------------------------------------------------- candidate masks

def test_deterministic_mask_exact():
    """p = 0.25: 1 - floor(u + p) keeps (1) for u < 0.75 and drops (0) for u >= 0.75."""
    z = jnp.full((5,), math.log(0.25 / 0.75), jnp.float32)
    u = jnp.asarray([0.0, 0.5, 0.74, 0.76, 0.99], jnp.float32)
    np.testing.assert_array_equal(np.asarray(cd.deterministic_mask(z, u)), [1, 1, 1, 0, 0])
    # p near 0 keeps for every u < 1; p = sigmoid(30) rounds to 1 in float32, so it drops even for u = 0
    np.testing.assert_array_equal(np.asarray(cd.deterministic_mask(jnp.full((5,), -30.0), u)), [1] * 5)
    np.testing.assert_array_equal(np.asarray(cd.deterministic_mask(jnp.full((5,), 30.0), u)), [0] * 5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_candidate_drop_frequency(dtype):
    """20000 candidates: shape (num, *p_logit.shape), values in {0, 1}, and the drop frequency of each gate
    is p within 4 binomial sigmas."""
    ps = np.array([0.05, 0.3, 0.5, 0.9])
    n = 20_000
    with _x64(dtype):
        z = jnp.asarray(np.log(ps / (1 - ps)), dtype)
        masks = np.asarray(jax.jit(cd.sample_candidate_masks, static_argnums=2)(jax.random.key(5), z, n))
    assert masks.shape == (n, 4) and masks.dtype == dtype
    assert set(np.unique(masks)) <= {0.0, 1.0}
    freq = 1 - masks.mean(0)
    assert np.all(np.abs(freq - ps) < 4 * np.sqrt(ps * (1 - ps) / n)), freq


# ---------------------------------------------------------------- gate

def test_apply_gate():
    """x * (1 - drop) by default, x * (1 - drop) / (1 - p) with p_logit; with hard masks of many candidates
    the rescaled gate is x in expectation (4 sigmas)."""
    rng = np.random.default_rng(4)
    x = rng.normal(size=(3, 4)).astype(np.float32)
    drop = rng.uniform(size=(3, 4)).astype(np.float32)
    ps = np.array([0.1, 0.3, 0.5, 0.7])
    z = jnp.asarray(np.log(ps / (1 - ps)), jnp.float32)
    np.testing.assert_allclose(np.asarray(cd.apply_gate(jnp.asarray(x), jnp.asarray(drop))), x * (1 - drop),
                               rtol=1e-6)
    np.testing.assert_allclose(np.asarray(cd.apply_gate(jnp.asarray(x), jnp.asarray(drop), z)),
                               x * (1 - drop) / (1 - ps), rtol=1e-5)
    n = 20_000
    masks = cd.sample_candidate_masks(jax.random.key(6), z, n)
    gated = np.asarray(jax.vmap(lambda m: cd.apply_gate(jnp.ones(4, jnp.float32), 1 - m, z))(masks))
    sigma = np.sqrt(ps / (1 - ps) / n)  # std of mask / (1 - p) is sqrt(p / (1 - p))
    assert np.all(np.abs(gated.mean(0) - 1) < 4 * sigma), gated.mean(0)


def test_init_logit():
    z = cd.init_logit((2, 3))
    assert z.shape == (2, 3) and z.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(cd.drop_prob(z)), 0.1, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(cd.keep_prob(z)), 0.9, rtol=1e-6)
