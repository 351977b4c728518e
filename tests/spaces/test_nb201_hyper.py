"""SMASH's NB201 adapter (jaxnas.spaces.nb201.hyper): the HyperNet's input and output written plainly
here (a loop over cells and edges, float64 numpy), the supernet run with the generated kernels in
place of its own, gradients reaching the HyperNet and not the replaced kernels, the perturbation."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxnas.nn import functional as fn
from jaxnas.spaces.arch import Choice
from jaxnas.spaces.nb201 import cell as nb
from jaxnas.spaces.nb201 import hyper
from jaxnas.spaces.nb201.networks import NB201SuperNet

C, N = 4, 2


@pytest.fixture(scope="module")
def net():
    return hyper.HyperNB201(C, N, 10, rngs=nnx.Rngs(0))


def direct_kernels(params, ops, z):
    """{(stage, position, edge): (k3, k1)} from the HyperNet's weights, one row at a time."""
    def wn(w):
        w = np.asarray(w, np.float64)
        return w / np.sqrt((w * w).sum())

    def lrelu(v):
        return np.where(v > 0, v, 0.02 * v)

    out = {}
    for s in range(3):
        c = C * 2 ** s
        for i in range(N):
            for e in range(nb.NUM_EDGES):
                f = [1.0 if ops[j] == o else -1.0 for j in range(nb.NUM_EDGES) for o in range(nb.NUM_OPS)]
                f += [float(s == t) for t in range(3)] + [float(i == t) for t in range(N)]
                f += [float(e == t) for t in range(nb.NUM_EDGES)] + list(np.asarray(z[e], np.float64))
                h = np.asarray(f)
                for layer in (0, 1):
                    h = lrelu(h @ wn(params["hypernet"]["trunk"][layer]["kernel"]))
                o = h @ wn(params["hypernet"]["heads"][s]["kernel"])
                k3, k1 = o[:9 * c * c].reshape(3, 3, c, c), o[9 * c * c:].reshape(1, 1, c, c)
                out[s, i, e] = (k3 / np.linalg.norm(k3), k1 / np.linalg.norm(k1))
    return out


def test_generated_kernels_replace_the_supernets_own(net):
    graph, params, stats = fn.split(net)
    rng = np.random.default_rng(0)
    ops = np.array([3, 2, 1, 4, 3, 0], np.int32)
    z = rng.normal(size=(nb.NUM_EDGES, hyper.Z_DIM)).astype(np.float32)
    x = rng.normal(size=(4, 8, 8, 3)).astype(np.float32)
    y = rng.integers(0, 10, 4).astype(np.int32)
    cand = {"ops": jnp.asarray(ops), "z": jnp.asarray(z)}

    def loss(p):
        logits, _ = fn.apply(graph, p, stats, x, Choice(cand), True)
        return jnp.mean(-jax.nn.log_softmax(logits)[jnp.arange(4), y]), logits

    (_, logits), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(params)
    # the plain supernet carrying the directly computed kernels (and the adapter's other weights)
    plain = NB201SuperNet(C, N, 10, rngs=nnx.Rngs(0))
    pg, pp, ps = fn.split(plain)
    pp = jax.tree.map(np.asarray, pp)
    want = direct_kernels(params, ops, z)
    net_params = jax.tree.map(np.asarray, params["net"])
    search = [k for k in sorted(net_params["cells"]) if "edges" in net_params["cells"][k]]
    assert len(search) == 3 * N
    for k in net_params["cells"]:
        pp["cells"][k] = net_params["cells"][k]
    for name in ("stem", "head"):
        pp[name] = net_params[name]
    for n, k in enumerate(search):
        s, i = divmod(n, N)
        for e in range(nb.NUM_EDGES):
            edge = pp["cells"][k]["edges"][e]
            assert not edge["conv3"]["conv"]["kernel"].any()  # the adapter's own kernels are zeros
            edge["conv3"]["conv"]["kernel"] = want[s, i, e][0].astype(np.float32)
            edge["conv1"]["conv"]["kernel"] = want[s, i, e][1].astype(np.float32)
    ref, _ = jax.jit(lambda p: fn.apply(pg, p, ps, x, Choice(jnp.asarray(ops)), True))(pp)
    np.testing.assert_allclose(np.asarray(logits), np.asarray(ref), rtol=1e-4, atol=1e-5)
    # gradients reach the HyperNet; the replaced kernels get none
    assert all(np.abs(np.asarray(g)).max() > 0 for g in jax.tree.leaves(grads["hypernet"]))
    for k in search:
        for edge in grads["net"]["cells"][k]["edges"].values():
            assert not np.asarray(edge["conv3"]["conv"]["kernel"]).any()
            assert not np.asarray(edge["conv1"]["conv"]["kernel"]).any()


def test_perturbation_redraws_each_edge_with_probability_p():
    archs = jnp.zeros((4000, nb.NUM_EDGES), jnp.int32)
    out = np.asarray(hyper.perturb(jax.random.key(0), archs, 0.25))
    changed = (out != 0).mean()
    assert changed == pytest.approx(0.25 * 4 / 5, abs=0.01)  # a redraw keeps the op 1 time in 5
    assert np.asarray(hyper.perturb(jax.random.key(0), archs, 0.25)).tolist() == out.tolist()
