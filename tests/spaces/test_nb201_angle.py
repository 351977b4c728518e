"""jaxnas.spaces.nb201.angle: the vectorised ABS angle against a plain oracle that builds the two
weight vectors of each architecture explicitly, as megvii-model/AngleNAS
NAS-Bench-201/exps/angle/weight_angle.py (`get_arch_angle`) does."""
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxnas.nn import split
from jaxnas.spaces import nb201
from jaxnas.spaces.nb201 import angle
from jaxnas.spaces.nb201.networks import NB201SuperNet

PATHS = [[0, 3], [0, 2, 3], [0, 1, 2, 3], [0, 1, 3]]


def _supernet(N, affine=False, seed=0):
    """(params0, paramsT): the initial float32 params and params0 + noise of a different scale per leaf."""
    _, params0, _ = split(NB201SuperNet(C=8, N=N, num_classes=10, affine=affine, rngs=nnx.Rngs(seed)))
    rng = np.random.default_rng(seed + 1)
    leaves, tree = jax.tree_util.tree_flatten(params0)
    noisy = [jnp.asarray(np.asarray(w) + rng.uniform(0.05,
                                                     1.0) * (np.std(w) + 0.1) * rng.normal(size=w.shape),
                         jnp.float32) for w in leaves]
    return params0, jax.tree_util.tree_unflatten(tree, noisy)


def _vector(p, arch):
    """theta_a of `arch` from params `p`, in float64, built leaf by leaf from the definition."""

    def f(x):
        return np.asarray(x, np.float64).ravel()

    parts = [f(p["stem"]["conv"]["kernel"]), f(p["stem"]["bn"]["scale"]), f(p["stem"]["bn"]["bias"]),
             f(p["head"]["bn"]["scale"]), f(p["head"]["bn"]["bias"]),
             f(p["head"]["classifier"]["kernel"]), f(p["head"]["classifier"]["bias"])]
    cells = [p["cells"][k] for k in range(len(p["cells"]))]
    for cell in cells:
        if "conv_a" in cell:  # ResNet reduction block
            for conv in ("conv_a", "conv_b"):
                parts += [f(cell[conv]["conv"]["kernel"]), f(cell[conv]["bn"]["scale"]),
                          f(cell[conv]["bn"]["bias"])]
            parts.append(f(cell["shortcut"]["kernel"]))
    for path in PATHS:
        for cell in cells:
            if "edges" not in cell:
                continue
            path_parts = []
            for j, i in itertools.pairwise(path):
                e = nb201.EDGES.index((i, j))
                op = int(arch[e])
                if op == nb201.NONE:
                    path_parts = None
                    break
                if op == nb201.POOL:
                    c_out = cell["edges"][e]["conv3"]["conv"]["kernel"].shape[-1]
                    path_parts.append(np.full(c_out * 9, 1.0 / 9.0))
                elif op == nb201.CONV1:
                    path_parts.append(f(cell["edges"][e]["conv1"]["conv"]["kernel"]))
                elif op == nb201.CONV3:
                    path_parts.append(f(cell["edges"][e]["conv3"]["conv"]["kernel"]))
            if path_parts:
                parts += path_parts
    return np.concatenate(parts)


def _oracle(params0, paramsT, archs):
    params0, paramsT = (jax.tree.map(np.asarray, nnx.to_pure_dict(p)) for p in (params0, paramsT))
    out = []
    for arch in archs:
        v0, vt = _vector(params0, arch), _vector(paramsT, arch)
        cos = np.sum(v0 * vt) / np.sqrt(np.sum(v0 * v0) * np.sum(vt * vt))  # no BLAS: slow beside XLA
        out.append(np.arccos(np.clip(cos, -1.0, 1.0)))
    return np.array(out)


def _archs():
    rng = np.random.default_rng(0)
    special = [[0] * 6, [1] * 6, [2] * 6, [3] * 6, [4] * 6,
               [3, 3, 3, 0, 3, 3],  # path [0,3] broken
               [0, 3, 3, 3, 3, 3],  # paths through 1<-0 broken
               [3, 3, 3, 3, 3, 0],  # paths through 3<-2 broken
               [2, 0, 0, 4, 0, 0],  # only [0,3] alive, pooling
               [4, 0, 1, 1, 4, 1],  # [0,3] skip-only; [0,1,3] pooling-only; [0,1,2,3] pool+skips
               [1, 1, 1, 1, 1, 1], [4, 1, 4, 1, 4, 1], [0, 4, 0, 4, 0, 4], [2, 0, 3, 0, 4, 0]]
    return np.concatenate([np.array(special, np.int32),
                           rng.integers(0, 5, (200, 6)).astype(np.int32),
                           rng.choice(np.array([0, 1, 4], np.int32), (40, 6))])  # no-conv archs


@pytest.fixture(scope="module")
def nets():
    return {1: _supernet(1), 2: _supernet(2, affine=True)}  # N=2 also has cell BN scale/bias to ignore


@pytest.mark.parametrize("N", [1, 2])
def test_matches_oracle_float64(nets, N):
    params0, paramsT = nets[N]
    archs = _archs()
    want = _oracle(params0, paramsT, archs)
    assert np.ptp(want) > 0.1  # the architectures differ
    with jax.enable_x64(True):

        def to64(p):
            return jax.tree.map(lambda x: jnp.asarray(np.asarray(x, np.float64)), p)

        blocks = angle.angle_blocks(to64(params0), to64(paramsT))
        assert blocks.cells.shape == (3 * N, 6, 5, 3) and blocks.cells.dtype == jnp.float64
        got = np.asarray(angle.angles(blocks, archs))
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-9)
    # all paths dropped: only the fixed part remains, as for any other all-`none`-output architecture
    np.testing.assert_allclose(got[0], _oracle(params0, paramsT, [[0, 0, 0, 0, 0, 0]])[0], atol=1e-9)


def test_matches_oracle_float32(nets):
    params0, paramsT = nets[1]
    archs = _archs()
    got = angle.arch_angles(params0, paramsT, archs)
    assert got.dtype == jnp.float32 and got.shape == (len(archs),)
    np.testing.assert_allclose(np.asarray(got), _oracle(params0, paramsT, archs), rtol=0, atol=1e-4)
    # traceable in the architecture; one architecture of shape [6] works too
    blocks = angle.angle_blocks(params0, paramsT)
    np.testing.assert_array_equal(jax.vmap(angle.angles, (None, 0))(blocks, archs),
                                  angle.angles(blocks, archs))
    np.testing.assert_allclose(angle.angles(blocks, archs[7]), got[7], rtol=1e-6)
    # unchanged weights: angle 0 for every architecture (cos clipped at 1)
    np.testing.assert_allclose(angle.arch_angles(params0, params0, archs), 0.0, atol=1e-3)
