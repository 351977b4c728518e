"""SMASH's main network against its PyTorch twin (`smash_twin`, written from the reference's forward),
and the derived network against the reference's MainNet written here: given the same generated
weights and architecture, logits, BN statistics and gradients agree. float64 on the PyTorch side."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as tf
from flax import nnx
from smash_twin import (
    assert_grads_match,
    assert_stats_match,
    leaves,
    note_features,
    t64,
    to_torch,
    twin_banks,
    twin_forward,
    twin_op,
    var_case,
)

from jaxnas.nn import functional as fn
from jaxnas.spaces.smash import network
from jaxnas.spaces.smash.config import Smash
from jaxnas.spaces.smash.layout import BLOCKS, OPTIONS
from jaxnas.spaces.smash.space import SmashSpace

OPTION_TABLE = np.asarray(OPTIONS, bool)
pytestmark = pytest.mark.usefixtures("torch_one_thread")
B, H = 4, 8


def test_main_network_matches_the_pytorch_twin():
    """Forward, BN running statistics and the gradients of the loss (main weights and the generated
    1x1 weights) on sampled tiny architectures (`ops=var`: up to 4 convs a layer, so the reference's
    default single conv is conv 0 of the same program) that use every bank size, non-square kernels,
    dilations and groups; one compiled program for all of them."""
    space, x, y, rng = var_case(B, H)
    lay = space.layout
    main = network.MainNet(lay, 10, rngs=nnx.Rngs(1))
    graph, params, stats = fn.split(main)
    rows = (lay.columns + 1) * lay.N * lay.dc
    w1x1 = rng.normal(size=(rows, lay.N_max)).astype(np.float32)

    def loss(p, w, s, cand):
        logits, new = fn.apply(graph, p, s, jnp.asarray(x), cand, w, True)
        return jnp.mean(-jax.nn.log_softmax(logits)[jnp.arange(B), y]), (logits, new)

    step = jax.jit(jax.value_and_grad(loss, (0, 1), has_aux=True))
    archs = space.sample(jax.random.key(3), 3)
    seen = {"non-square": False, "dilated": False, "grouped": False, "several convs": False}
    for i in range(3):
        arch = jax.tree.map(lambda a, i=i: a[i], archs)
        (value, (logits, new)), (g_params, g_w) = step(params, w1x1, stats, arch)
        ref = space.to_reference(jax.tree.map(np.asarray, arch))
        tp, tstats = to_torch(params, stats)
        tw = t64(w1x1).requires_grad_(True)
        for t in leaves(tp):
            t.requires_grad_(True)
        t_logits, t_stats = twin_forward(lay, ref, tw, tp, tstats, t64(x).permute(0, 3, 1, 2), 10)
        t_loss = tf.cross_entropy(t_logits, torch.from_numpy(y).long())
        t_loss.backward()
        np.testing.assert_allclose(np.asarray(logits), t_logits.detach().numpy(), rtol=1e-4, atol=1e-5)
        assert float(value) == pytest.approx(t_loss.item(), rel=1e-5)
        assert_stats_match([new["trans_bn"][b] for b in range(BLOCKS - 1)] + [new["bn"]], t_stats)
        assert_grads_match(jax.tree.leaves(g_params), tp)
        np.testing.assert_allclose(np.asarray(g_w), tw.grad.numpy(), atol=2e-5 * float(tw.grad.abs().max()))
        note_features(seen, lay, arch)
    assert step._cache_size() == 1
    # evaluation mode (the selection's: BN's running statistics, here the last step's)
    logits, _ = fn.apply(graph, params, new, jnp.asarray(x), arch, w1x1, False)
    tp, tstats = to_torch(params, new)
    want, _ = twin_forward(lay, ref, t64(w1x1), tp, tstats, t64(x).permute(0, 3, 1, 2), 10, train=False)
    np.testing.assert_allclose(np.asarray(logits), want.detach().numpy(), rtol=1e-4, atol=1e-5)
    assert all(seen.values()), seen


def twin_derived(lay, ref, p, x):
    """SMASH.py MainNet (sandwich layers) in train mode on the ragged tuple, with the JAX weights."""
    ops_, dilation, kernels, groups = ref[3], ref[5], ref[8], ref[9]
    k = [0]

    def bn(v, q):
        return tf.batch_norm(v, None, None, q["scale"], q["bias"], training=True, eps=1e-5)

    def conv(v, q, kernel=(1, 1), dil=(1, 1), grp=1):
        pad = tuple((kk - 1) * d // 2 for kk, d in zip(kernel, dil))
        return tf.conv2d(v, q["kernel"], padding=pad, dilation=tuple(dil), groups=grp)

    def layer(b, i, inp):
        q = p["layers"][k[0]]
        k[0] += 1
        h = bn(conv(torch.relu(bn(inp, q["bn_in"])), q["squeeze"]), q["bn_mid"])

        def seq(j, v):
            return conv(torch.relu(v), q["convs"][j], kernels[b][i][j], dilation[b][i][j], groups[b][i][j])
        return twin_op(h, ops_[b][i], seq)

    def block_end(b, out):
        if b < BLOCKS - 1:
            return tf.avg_pool2d(conv(torch.relu(bn(out, p["trans_bn"][b])), p["trans"][b]), 2)
        return out

    out = twin_banks(lay, ref, conv(x, p["stem"], (7, 7)), layer, block_end)  # no ReLU after the stem
    out = torch.relu(bn(out, p["bn"])).mean((2, 3))
    return out @ p["fc"]["kernel"] + p["fc"]["bias"]

def torch_tree(tree):
    """The JAX weights as float64 tensors, HWIO kernels as OIHW."""
    if hasattr(tree, "items"):
        return {k: torch_tree(v) for k, v in tree.items()}
    t = t64(tree)
    return t.permute(3, 2, 0, 1).contiguous() if t.ndim == 4 else t


def test_derived_network_matches_the_reference_mainnet():
    """`jaxnas train`'s network for a found architecture against MainNet written here (the twin
    takes its weights; a missing or misshapen one fails there): logits of sampled architectures
    with several convs per layer, grouped, dilated and non-square."""
    space = SmashSpace(Smash(depth=4, width=1, N_max=32, max_layers=6, ops="var"))
    x = np.random.default_rng(1).normal(size=(B, H, H, 3)).astype(np.float32)
    archs = jax.device_get(space.sample(jax.random.key(5), 2))
    for i in range(2):
        arch = jax.tree.map(lambda a, i=i: a[i], archs)
        graph, params, stats = fn.split(space.build_network(arch, space.config, 10, seed=i))
        logits, _ = fn.apply(graph, params, stats, jnp.asarray(x), True)
        ref = space.to_reference(arch)
        p = torch_tree(jax.tree.map(np.asarray, params))
        want = twin_derived(space.layout, ref, p, t64(x).permute(0, 3, 1, 2))
        np.testing.assert_allclose(np.asarray(logits), want.numpy(), rtol=1e-4, atol=1e-4)
        assert len(p["layers"]) == int(np.sum(arch["layers"]))
