"""SMASH's main network against a PyTorch twin written here from the reference's forward (ajbrock/SMASH
SMASH.py `forward`, layers.py `SMASHC2D`, `SMASHTransition`, `SMASHBN2D`, `SMASHFC`): ragged lists
of banks, concatenated reads, the generated 1x1 weight sliced from the running row offset and
divided by its norm, the kernel bank cropped and run with PyTorch's dilation, groups and padding,
writes added slice by slice, BN on the used channels. Given the same generated weights and
architecture, logits, BN statistics and gradients agree. float64 on the PyTorch side."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as tf
from flax import nnx

from jaxnas.nn import functional as fn
from jaxnas.spaces.smash import network
from jaxnas.spaces.smash.config import Smash
from jaxnas.spaces.smash.layout import BLOCKS, OPTIONS
from jaxnas.spaces.smash.space import SmashSpace

OPTION_TABLE = np.asarray(OPTIONS, bool)
pytestmark = pytest.mark.usefixtures("torch_one_thread")
B, H = 4, 8


def t64(a):
    return torch.from_numpy(np.asarray(a, np.float64).copy())


def twin_sliced_conv(x, bank, kernel, dilation, groups, c_out):
    """SMASHC2D: the bank's first c_out outputs and first C_in / groups inputs, centre-cropped."""
    kh, kw = kernel
    size = bank.shape[-1]
    w = bank[:c_out, :x.shape[1] // groups, (size - kh) // 2:(size - kh) // 2 + kh,
             (size - kw) // 2:(size - kw) // 2 + kw]
    pad = ((kh - 1) * dilation[0] // 2, (kw - 1) * dilation[1] // 2)
    return tf.conv2d(x, w, padding=pad, dilation=tuple(dilation), groups=groups)


def twin_op(h, op, conv):
    """layers.py SMASHLayer: w0(x), + w2(x), w1 after w0, w3 after w2; `conv(j, x)` is conv j of x."""
    y = conv(0, h)
    if op[1]:
        y = conv(1, y)
    if op[2]:
        z = conv(2, h)
        y = y + (conv(3, z) if op[3] else z)
    return y


def twin_banks(lay, ref, out, layer, block_end):
    """The reference's memory banks (SMASH.py forward, MainNet.forward): per block the input's
    first banks, each layer `layer(b, i, concat of its reads)` written slice by slice (write j gets
    output slice j mod G / bs), then `block_end(b, concat of the banks)`."""
    incoming, outgoing, G, bank_sizes = ref[0], ref[1], ref[2], ref[7]
    for b in range(BLOCKS):
        bs = bank_sizes[b]
        bsn = bs * lay.N
        nin = lay.in_channels[b] // bsn
        top = max([max(w) + 1 for w in outgoing[b]] + [nin])
        m = [out[:, j * bsn:(j + 1) * bsn] if j < nin else None for j in range(top)]
        for i in range(len(incoming[b])):
            y = layer(b, i, torch.cat([m[r] for r in incoming[b][i]], 1))
            for j, target in enumerate(outgoing[b][i]):
                s = j % (G[b][i] // bs)
                piece = y[:, s * bsn:(s + 1) * bsn]
                m[target] = piece if m[target] is None else m[target] + piece
        out = block_end(b, torch.cat(m, 1))
    return out


def twin_forward(lay, ref, w1x1, p, stats, x, num_classes, train=True):
    """The reference's forward on the ragged 10-tuple; returns (logits, BN stats)."""
    G, ops_, dilation, kernels, groups = ref[2], ref[3], ref[5], ref[8], ref[9]
    N = lay.N
    n, new_stats = [0], []

    def layer(b, i, inp):
        nch, units = inp.shape[1], G[b][i] * N
        n_b = min(min(max(nch // units, 1), lay.bottleneck) * units, nch, lay.max_bottleneck * lay.N_max)
        w = w1x1[n[0]:n[0] + nch, :n_b].T
        h = torch.relu(tf.conv2d(inp, (w / w.norm())[:, :, None, None]))
        n[0] += nch
        def conv(j, v):
            return twin_sliced_conv(torch.relu(v), p["banks"][b][j], kernels[b][i][j], dilation[b][i][j],
                                    groups[b][i][j], units)
        return twin_op(h, ops_[b][i], conv)

    def block_end(b, out):
        c = out.shape[1]
        bn = p["bn"] if b == BLOCKS - 1 else p["trans_bn"][b]
        mean, var = stats[b][0][:c].clone(), stats[b][1][:c].clone()
        out = torch.relu(tf.batch_norm(out, mean, var, bn["scale"][:c], bn["bias"][:c], training=train,
                                       momentum=0.1, eps=1e-5))
        new_stats.append((mean, var))
        if b < BLOCKS - 1:
            out = tf.avg_pool2d(tf.conv2d(out, p["trans"][b][:c].T[:, :, None, None]), 2)
        return out

    out = twin_banks(lay, ref, torch.relu(tf.conv2d(x, p["stem"], padding=3)), layer, block_end)
    logits = out.mean((2, 3)) @ p["fc"][:out.shape[1]] + p["fc_bias"]
    assert logits.shape[1] == num_classes
    return logits, new_stats

def to_torch(p, s):
    """The JAX main network's weights (HWIO kernels, [in, out] matrices) in the twin's layout."""
    oihw = lambda a: t64(a).permute(3, 2, 0, 1).contiguous()  # noqa: E731
    tp = {"stem": oihw(p["stem"]), "fc": t64(p["fc"]), "fc_bias": t64(p["fc_bias"]),
          "banks": [[oihw(p["banks"][b][j]) if j in p["banks"][b] else None for j in range(4)]
                    for b in range(BLOCKS)],
          "trans": [t64(p["trans"][b]) for b in range(BLOCKS - 1)],
          "trans_bn": [{k: t64(v) for k, v in p["trans_bn"][b].items()} for b in range(BLOCKS - 1)],
          "bn": {k: t64(v) for k, v in p["bn"].items()}}
    bn_stats = [s["trans_bn"][b] for b in range(BLOCKS - 1)] + [s["bn"]]
    return tp, [(t64(st["mean"]), t64(st["var"])) for st in bn_stats]


def leaves(tp):
    """The twin's leaf tensors in the JAX state's leaf order (sorted keys)."""
    order = []
    for b in range(BLOCKS):
        order += [tp["banks"][b][j] for j in range(4) if tp["banks"][b][j] is not None]
    order += [tp["bn"]["bias"], tp["bn"]["scale"], tp["fc"], tp["fc_bias"], tp["stem"]]
    order += list(tp["trans"])
    for b in range(BLOCKS - 1):
        order += [tp["trans_bn"][b]["bias"], tp["trans_bn"][b]["scale"]]
    return order


@pytest.mark.parametrize("ops", ["single", "var"])
def test_main_network_matches_the_pytorch_twin(ops):
    """Forward, BN running statistics and the gradients of the loss (main weights and the generated
    1x1 weights) on sampled tiny architectures that use every bank size, non-square kernels,
    dilations and groups; one compiled program for all of them."""
    space = SmashSpace(Smash(depth=4, width=1, N_max=32, max_layers=6, ops=ops))
    lay = space.layout
    main = network.MainNet(lay, 10, rngs=nnx.Rngs(1))
    graph, params, stats = fn.split(main)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(B, H, H, 3)).astype(np.float32)
    y = rng.integers(0, 10, B).astype(np.int32)
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
        got_stats = [new["trans_bn"][b] for b in range(BLOCKS - 1)] + [new["bn"]]
        for st, (mean, var) in zip(got_stats, t_stats):
            c = mean.shape[0]
            np.testing.assert_allclose(np.asarray(st["mean"])[:c], mean.numpy(), rtol=1e-4, atol=1e-5)
            np.testing.assert_allclose(np.asarray(st["var"])[:c], var.numpy(), rtol=1e-4, atol=1e-5)
            np.testing.assert_array_equal(np.asarray(st["mean"])[c:], 0.0)  # channels not in use: untouched
        scale = max(float(np.abs(t.grad).max()) for t in leaves(tp) if t.grad is not None)
        for g, t in zip(jax.tree.leaves(g_params), leaves(tp)):
            want = np.zeros(t.shape) if t.grad is None else t.grad.numpy()
            if g.ndim == 4:
                want = want.transpose(2, 3, 1, 0)  # OIHW -> HWIO
            np.testing.assert_allclose(np.asarray(g), want, atol=2e-5 * scale)
        np.testing.assert_allclose(np.asarray(g_w), tw.grad.numpy(), atol=2e-5 * float(tw.grad.abs().max()))
        a = jax.tree.map(np.asarray, arch)
        live = np.arange(lay.max_layers)[None] < a["layers"][:, None]
        on = np.asarray(OPTION_TABLE)[a["op"]] & live[..., None]
        seen["non-square"] |= bool((a["kernel"][..., 0] != a["kernel"][..., 1])[on].any())
        seen["dilated"] |= bool((a["dilation"] > 1)[on].any())
        seen["grouped"] |= bool((a["groups"] > 1)[on].any())
        seen["several convs"] |= bool(on.sum(-1).max() > 1)
    assert step._cache_size() == 1
    # evaluation mode (the selection's: BN's running statistics, here the last step's)
    logits, _ = fn.apply(graph, params, new, jnp.asarray(x), arch, w1x1, False)
    tp, tstats = to_torch(params, new)
    want, _ = twin_forward(lay, ref, t64(w1x1), tp, tstats, t64(x).permute(0, 3, 1, 2), 10, train=False)
    np.testing.assert_allclose(np.asarray(logits), want.detach().numpy(), rtol=1e-4, atol=1e-5)
    assert all(v for k, v in seen.items() if k != "several convs" or ops == "var"), seen


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
