"""NSE's standalone mobile network against a PyTorch twin written here from the reference's layers
(orashi/NSE_NAS utils/supernet_utils.py `LinearBottleneck`, `Rec`, the cell mean and `ValImageNet`'s
stem and head; docs/nse-reference.md 1-3): logits, gradients of every weight and evaluation-mode
logits agree, float64 on the PyTorch side."""
import functools

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as tf
from flax import nnx
from mobile_twin import torch_tree, twin

from jaxnas.nn import functional as fn
from jaxnas.nn import ops
from jaxnas.spaces.mobile.config import Mobile
from jaxnas.spaces.mobile.network import MobileNetwork
from jaxnas.spaces.mobile.space import MobileSpace

pytestmark = pytest.mark.usefixtures("torch_one_thread")
SMALL = Mobile(alloc=(1, 1, 1, 1, 1, 1), channels=(8, 8, 16, 16, 24, 24, 32), head=32, resolution=32)
# every kind of operator: dilated MBConv, large kernels, both Recs, several ops in a cell, empty cells
ARCH = ("mobile-a111111:mb3t1d2+rec5t2|mb5t3|-|mb3t6d3+mb11t1|mb7t6|rec7t1|-|mb9t3+mb3t3|mb3t1|rec5t1+mb5t1"
        "|mb3t1d3|mb5t6")


def test_standalone_network_matches_the_pytorch_twin():
    space = MobileSpace(SMALL)
    gates = space.from_string(ARCH)
    net = MobileNetwork(space.layout, gates, 10, rngs=nnx.Rngs(0))
    graph, params, stats = fn.split(net)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 32, 32, 3)).astype(np.float32)
    y = rng.integers(0, 10, 4)

    def loss(p):
        logits, new = fn.apply(graph, p, stats, jnp.asarray(x), True)
        return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(4), y]), (logits, new)

    (value, (logits, new)), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(params)
    tp = torch_tree(jax.device_get(params))
    xt = torch.from_numpy(x.astype(np.float64)).permute(0, 3, 1, 2)
    t_logits = twin(space.layout, net.selected, tp, None, xt)
    t_loss = tf.cross_entropy(t_logits, torch.from_numpy(y))
    t_loss.backward()
    np.testing.assert_allclose(np.asarray(logits), t_logits.detach().numpy(), rtol=1e-4, atol=1e-5)
    assert float(value) == pytest.approx(t_loss.item(), rel=1e-5)
    want = jax.tree.map(lambda t: t.grad.numpy(), tp, is_leaf=lambda t: isinstance(t, torch.Tensor))
    for g, w in zip(jax.tree.leaves(jax.device_get(grads)), jax.tree.leaves(want)):
        np.testing.assert_allclose(g, w, atol=1e-5 * max(1.0, float(np.abs(w).max())), rtol=1e-3)
    assert len(jax.tree.leaves(grads)) == len(jax.tree.leaves(want)) > 50
    # evaluation mode with the statistics the training pass left
    e_logits, _ = fn.apply(graph, params, new, jnp.asarray(x), False)
    t_eval = twin(space.layout, net.selected, tp, jax.device_get(new), xt, train=False)
    np.testing.assert_allclose(np.asarray(e_logits), t_eval.detach().numpy(), rtol=1e-4, atol=1e-5)
    # the cost model counts exactly this network's parameters
    assert int(space.cost(gates, num_classes=10)["params"]) == fn.count_params(params)


def jaxpr_macs(jaxpr) -> int:
    """Multiply-adds of the convolutions and matrix products in a jaxpr (sub-jaxprs included):
    output elements x input channels per group x kernel taps, as utils/macc.py counts them."""
    total = 0
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "conv_general_dilated":
            kh, kw, c_in_g, _ = eqn.invars[1].aval.shape
            total += int(np.prod(eqn.outvars[0].aval.shape)) * c_in_g * kh * kw
        elif eqn.primitive.name == "dot_general":
            (contract, _), _ = eqn.params["dimension_numbers"]
            k = int(np.prod([eqn.invars[0].aval.shape[d] for d in contract]))
            total += int(np.prod(eqn.outvars[0].aval.shape)) * k
        for sub in jax.extend.core.jaxprs_in_params(eqn.params):
            total += jaxpr_macs(sub)
    return total


def test_cost_model_counts_the_standalone_networks_multiply_adds(monkeypatch):
    """The traced cost of random architectures against a direct count of each built network's
    forward (its jaxpr), plus the global pool's output size (the reference counts it). Depthwise
    convs are traced as XLA's grouped convs (on CPU they run as taps or dense: other jaxprs)."""
    monkeypatch.setattr(ops, "depthwise_form", lambda *_: "grouped")
    space = MobileSpace(Mobile(alloc=(1, 1, 1, 1, 1, 1), channels=(16, 16, 24, 24, 32, 32, 40), head=48,
                               resolution=32))
    gates = np.random.default_rng(4).random((2, *space.shape)) < 0.2
    gates[:, ~space.identity, 0] = True  # a reduction cell runs at least one op
    want = jax.device_get(space.cost(gates, num_classes=10))  # leading batch axis
    for i, g in enumerate(gates):
        graph, params, stats = fn.split(MobileNetwork(space.layout, g, 10, rngs=nnx.Rngs(i)))
        forward = functools.partial(fn.apply, graph, params, stats, train=False)
        jaxpr = jax.make_jaxpr(lambda x, f=forward: f(x)[0])(jnp.zeros((1, 32, 32, 3)))
        assert jaxpr_macs(jaxpr.jaxpr) + space.layout.head == pytest.approx(float(want["flops"][i]), rel=1e-6)
        assert int(want["params"][i]) == fn.count_params(params)
