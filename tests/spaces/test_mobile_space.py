"""NSE's mobile space: the sampler's law (the reference's `balance` sampler, su:994-1000), the string
form, the validator's one-line errors, the hash and the traceable cost."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnas.spaces.mobile.config import Mobile
from jaxnas.spaces.mobile.layout import POOL
from jaxnas.spaces.mobile.space import NAMES, MobileSpace

SPACE = MobileSpace(Mobile(alloc=(1, 1, 1, 1, 1, 1), resolution=32))  # 12 cells, 6 of them identity


def test_sample_draws_each_active_op_with_probability_half_and_never_empties_a_reduction():
    active = np.zeros(SPACE.shape, bool)
    active[:, :5] = True         # a five-op subset everywhere ...
    active[1, :5] = [1, 1, 0, 0, 0]  # ... but two ops in reduction cell 1
    active[2] = False            # an identity cell with no active op
    state = {"active": jnp.asarray(active)}
    g = np.asarray(jax.jit(SPACE.sample, static_argnums=1)(jax.random.key(0), 20000, state))
    assert g.shape == (20000, *SPACE.shape) and g.dtype == bool
    assert not (g & ~active).any()                              # only active ops
    assert g[:, ~SPACE.identity].any(-1).all()                  # reductions never empty
    assert not g[:, 2].any()                                    # an empty subset stays empty
    ident = np.flatnonzero(SPACE.identity & active.any(-1))
    np.testing.assert_allclose(g[:, ident][..., :5].mean(), 0.5, atol=0.01)
    np.testing.assert_allclose((~g[:, ident].any(-1)).mean(), 1 / 32, atol=0.005)  # identity cells may skip
    # two active ops in a reduction cell: uniform over the 3 non-empty subsets
    pairs = g[:, 1, 0].astype(int) * 2 + g[:, 1, 1]
    np.testing.assert_allclose(np.bincount(pairs, minlength=4)[1:] / len(pairs), 1 / 3, atol=0.015)
    # five active ops in a reduction cell: each kept with probability 16/31 (2^4 of the 31 subsets)
    np.testing.assert_allclose(g[:, 5, :5].mean(), 16 / 31, atol=0.01)
    assert SPACE.sample(jax.random.key(0), 3).any(-1)[:, ~SPACE.identity].all()


def test_strings_round_trip_and_name_the_pool():
    g = np.asarray(SPACE.sample(jax.random.key(1), 8))
    for a in g:
        text = SPACE.to_string(a)
        assert text.startswith("mobile-a111111:") and text.count("|") == 11
        np.testing.assert_array_equal(SPACE.from_string(text), a)
    assert NAMES[:4] == ("mb3t1", "mb3t1d2", "mb3t1d3", "mb3t3") and NAMES[-1] == "rec7t4"
    assert len(NAMES) == 27
    one = "mobile-a111111:-|rec5t1|mb3t6d2+mb11t6|mb5t3|-|mb7t1|-|mb9t3|-|mb3t1|mb5t6|rec7t4"
    a = SPACE.from_string(one)
    assert SPACE.to_string(a) == one and a.sum() == 9 and a[2, POOL.index(("mb", 3, 6, 2))]


def test_a_smaller_pool_by_name():
    """`mobile.ops` keeps the named operators in the pool's order: the shape, strings, costs follow."""
    small = MobileSpace(Mobile(alloc=(1, 1, 1, 1, 1, 1), resolution=32, ops=("rec5t1", "mb3t3")))
    assert small.names == ("mb3t3", "rec5t1") and small.shape == (12, 2)
    text = "mobile-a111111:" + "|".join(["-", "rec5t1"] + ["mb3t3+rec5t1"] * 10)
    a = small.from_string(text)
    assert small.to_string(a) == text
    full = np.zeros(SPACE.shape, bool)
    full[:, [NAMES.index("mb3t3"), NAMES.index("rec5t1")]] = a
    np.testing.assert_array_equal(np.asarray(small.cost(a)["flops"]), np.asarray(SPACE.cost(full)["flops"]))
    with pytest.raises(ValueError, match="unknown operator 'mb3t3d2'"):
        small.from_string(text.replace("rec5t1", "mb3t3d2", 1))
    with pytest.raises(ValueError, match="mobile.ops: unknown operator 'mb4t1'"):
        MobileSpace(Mobile(ops=("mb4t1",)))


@pytest.mark.parametrize("text, says", [
    ("mobile-a111111:-|mb4t1|-|-|-|mb3t1|-|mb3t1|-|mb3t1|-|mb3t1", "cell 1: unknown operator 'mb4t1'"),
    ("mobile-a133333:-|mb3t1", "starts with 'mobile-a111111:'"),
    ("mobile-a111111:-|mb3t1", "expected 12 '|'-separated cells, got 2"),
    ("mobile-a111111:-|-|-|mb3t1|-|mb3t1|-|mb3t1|-|mb3t1|-|mb3t1", "cell 1 (R, 16->24 channels) selects no "
                                                                    "operator")])
def test_bad_strings_get_a_one_line_error(text, says):
    with pytest.raises(ValueError) as err:
        SPACE.from_string(text)
    assert says in str(err.value) and "\n" not in str(err.value)


def test_validate_refuses_a_wrong_shape_and_non_binary_gates():
    with pytest.raises(ValueError, match=r"shape \(12, 27\)"):
        SPACE.validate(np.ones((11, 27), bool))
    with pytest.raises(ValueError, match="0/1"):
        SPACE.validate(np.full((12, 27), 2))


def test_hash_tells_architectures_apart():
    g = np.asarray(SPACE.sample(jax.random.key(2), 64))
    h = SPACE.hash(g)
    assert h.shape == (64,) and len(set(h.tolist())) == len({a.tobytes() for a in g})
    assert SPACE.hash(g[3]) == h[3]


def test_cost_is_the_tables_traced_and_batched():
    g = np.asarray(SPACE.sample(jax.random.key(3), 16))
    got = jax.device_get(jax.jit(jax.vmap(SPACE.cost))(g))
    macs, params = SPACE.layout.tables
    back_m, back_p = SPACE.layout.back(10)
    want_p = back_p + (g * params).sum((1, 2))
    want_m = back_m + (g * macs).sum((1, 2))
    np.testing.assert_array_equal(got["params"], want_p)
    np.testing.assert_allclose(got["flops"], want_m, rtol=1e-6)
    # the counts by hand for one cell: MBConv k5 t3 in reduction cell 3 (24 -> 40 channels, 32 -> 16 px)
    e = 24 * 3
    assert macs[3, NAMES.index("mb5t3")] == e * 32 * 32 * 24 + e * 16 * 16 * 25 + 40 * 16 * 16 * e


def test_width_multiplier_and_the_cheapest_architecture():
    """A width multiplier below 1 (the CPU preset's 0.25) is a valid size; 0 is refused. The cheapest
    architecture (identity cells empty, each other cell its cheapest operator) costs what a loop
    over the pool finds, and no sampled architecture costs less."""
    small = MobileSpace(Mobile(alloc=(1, 1, 1, 1, 1, 1), scale=0.25, head=256, resolution=32))
    with pytest.raises(ValueError, match="mobile.scale"):
        Mobile(scale=0.0).check()
    macs, _ = small.layout.tables
    want = small.layout.back()[0] + sum(min(macs[c]) for c, cell in enumerate(small.layout.cells)
                                        if not cell.identity)
    assert small.cheapest_flops() == want
    archs = small.sample(jax.random.key(0), 64)
    assert int(jnp.min(jax.vmap(small.cost)(archs)["flops"])) >= want
