"""NSE's mobile supernet (`spaces/mobile/supernet.py`) against the standalone network of the same
gates carrying the same weights: logits and BN statistics in the weight step's gated form (with a
static operator subset larger than the gates), and the pair estimator's forward value."""
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxnas.nn import functional as fn
from jaxnas.spaces.arch import Gates
from jaxnas.spaces.mobile.config import Mobile
from jaxnas.spaces.mobile.layout import Layout
from jaxnas.spaces.mobile.network import MobileNetwork
from jaxnas.spaces.mobile.supernet import MobileSupernet

SMALL = Mobile(alloc=(1, 1, 0, 0, 0, 0), channels=(8, 8, 8, 8, 8, 8, 8), head=16, resolution=32)


def standalone_like(net, gates, layout):
    """The standalone network of `gates` with the supernet's weights and statistics."""
    alone = MobileNetwork(layout, gates, 10, rngs=nnx.Rngs(9))
    alone.stem, alone.head = net.stem, net.head
    for c, ids in enumerate(alone.selected):
        for k, j in enumerate(ids):
            alone.cells[c][k] = net.cells[c][j]
    return alone


def test_gated_supernet_is_the_standalone_network():
    layout = Layout.of(SMALL)
    cells = len(layout.cells)
    net = MobileSupernet(layout, 10, rngs=nnx.Rngs(0))
    graph, params, stats = fn.split(net)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(4, 32, 32, 3)).astype(np.float32))
    ops = tuple((0, 7, 13, 20, 26) for _ in range(cells))           # the round's subset (static)
    gates = np.zeros((cells, 27), bool)
    gates[:, 7] = True
    gates[1:, 20] = True
    gates[0, 7] = not layout.cells[0].identity  # an empty identity cell where there is one
    run = jax.jit(lambda p, s, g: fn.apply(graph, p, s, x, Gates(g), train=True, ops=ops))
    logits, new = run(params, stats, jnp.asarray(gates))
    alone = standalone_like(nnx.merge(graph, params, stats), gates, layout)
    a_graph, a_params, a_stats = fn.split(alone)
    want, a_new = fn.apply(a_graph, a_params, a_stats, x, train=True)
    np.testing.assert_allclose(np.asarray(logits), np.asarray(want), rtol=2e-5, atol=2e-6)
    got = nnx.merge(graph, params, new)
    moved = standalone_like(got, gates, layout)
    for (path, v), (_, w) in zip(jax.tree_util.tree_flatten_with_path(fn.split(moved)[2])[0],
                                 jax.tree_util.tree_flatten_with_path(a_new)[0]):
        np.testing.assert_allclose(np.asarray(v), np.asarray(w), rtol=1e-5, atol=1e-6, err_msg=str(path))
    # operators in the subset whose gate is off kept their statistics; so did operators outside it
    for c in range(cells):
        for j in (0, 13, 26, 3):
            before = nnx.as_pure(nnx.state(nnx.merge(graph, params, stats).cells[c][j], nnx.BatchStat))
            after = nnx.as_pure(nnx.state(got.cells[c][j], nnx.BatchStat))
            jax.tree.map(np.testing.assert_array_equal, before, after)
    # the pair form's value is y_s: the standalone network of s
    u = np.zeros_like(gates)
    u[:, 0] = True
    q = jnp.full((cells, 2), 0.5)
    pair = fn.apply(graph, params, stats, x, Gates({"s": gates, "u": u, "q": q}), train=True, ops=ops)[0]
    np.testing.assert_allclose(np.asarray(pair), np.asarray(want), rtol=2e-5, atol=2e-6)
