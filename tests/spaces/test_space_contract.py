"""The contract every registered search space must keep (jaxnas.spaces.base.Space).

Each test runs over every space in `jaxnas.registry.SPACES`, so a new space is checked the moment it
is registered: sampling (shape, dtype, traceability, the space state), validation, string round
trips, hashing, and the optional capabilities it declares.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnas import spaces
from jaxnas.spaces import has, nb201

SPACES = sorted(spaces.all_spaces())


@pytest.fixture(params=SPACES)
def space(request):
    return spaces.get(request.param)


def _leaves_match_spec(space, archs, k):
    spec = jax.tree.leaves(space.spec)
    leaves = jax.tree.leaves(archs)
    assert len(leaves) == len(spec)
    for leaf, s in zip(leaves, spec):
        assert leaf.shape == (k, *s.shape) and leaf.dtype == s.dtype


def test_unknown_space_is_a_one_line_error():
    available = ", ".join(sorted(spaces.all_spaces()))
    with pytest.raises(ValueError, match=f"unknown space 'nb301'; available: {available}"):
        spaces.get("nb301")


def test_sample_matches_spec_and_is_traceable(space):
    key = jax.random.key(0)
    archs = space.sample(key, 7)
    _leaves_match_spec(space, archs, 7)
    jitted = jax.jit(lambda k: space.sample(k, 7))(key)
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(archs), jax.tree.leaves(jitted)))
    other = space.sample(jax.random.key(1), 7)
    assert not all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(archs), jax.tree.leaves(other)))


def test_validate_string_round_trip_and_hash(space):
    archs = jax.device_get(space.sample(jax.random.key(2), 50))
    valid = space.validate(archs)
    hashes = np.asarray(space.hash(valid))
    assert hashes.shape == (50,) and np.issubdtype(hashes.dtype, np.integer)
    for i in range(50):
        one = jax.tree.map(lambda x: x[i], valid)  # noqa: B023  (called at once)
        text = space.to_string(one)
        back = space.from_string(text)
        assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(one)))
        assert int(space.hash(back)) == int(hashes[i])
    with pytest.raises(ValueError):
        space.from_string("not an architecture")


def test_hash_is_an_identity_on_the_enumerated_space(space):
    if not has(space, "enumerate"):
        pytest.skip(f"{space.name} is not enumerable")
    every = space.enumerate()
    hashes = np.asarray(space.hash(every))
    assert len(np.unique(hashes)) == space.size == len(hashes)


def test_space_state_restricts_sampling(space):
    if not has(space, "init_state"):
        pytest.skip(f"{space.name} has no state")
    state = space.init_state()
    key = jax.random.key(3)
    full = space.sample(key, 64, state)  # the initial state allows everything: the stateless draw
    free = space.sample(key, 64)
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(full), jax.tree.leaves(free)))
    # fixed-shape state: a jitted sampler takes any state of the initial one's shapes
    jitted = jax.jit(lambda k, s: space.sample(k, 64, s))
    assert all(np.array_equal(a, b) for a,
               b in zip(jax.tree.leaves(jitted(key, state)), jax.tree.leaves(full)))


def test_nb201_shrunk_state_is_respected_and_uniform():
    space = nb201.SPACE
    ops = np.ones((nb201.NUM_EDGES, nb201.NUM_OPS), bool)
    ops[:, nb201.NONE] = False
    ops[2] = [False, False, True, False, False]
    state = {"ops": jnp.asarray(ops)}
    archs = np.asarray(jax.jit(lambda k, s: space.sample(k, 4000, s))(jax.random.key(4), state))
    assert space.allows(archs, state).all()
    assert (archs[:, 2] == nb201.CONV1).all()
    counts = np.bincount(archs[:, 0], minlength=nb201.NUM_OPS)
    assert counts[nb201.NONE] == 0 and (np.abs(counts[1:] / 4000 - 0.25) < 0.03).all()


def test_nb201_hash_is_the_nb201_index():
    archs = nb201.from_index(np.array([0, 1, 777, 15624]))
    np.testing.assert_array_equal(nb201.SPACE.hash(archs), [0, 1, 777, 15624])
    np.testing.assert_array_equal(nb201.SPACE.bench_index(archs), [0, 1, 777, 15624])


def test_nb201_capabilities():
    space = nb201.SPACE
    assert all(has(space, c) for c in ("size", "enumerate", "bench_index", "relaxed_spec", "cost",
                                       "init_state"))
    assert not has(space, "encode")
    assert space.relaxed_spec.shape == (nb201.NUM_EDGES, nb201.NUM_OPS)
    cost = jax.jit(jax.vmap(space.cost))(jnp.asarray(nb201.from_index(np.array([0, 1]))))
    assert cost["params"].shape == (2,) and cost["flops"].shape == (2,)
    with pytest.raises(ValueError, match="unknown capability"):
        has(space, "fly")
