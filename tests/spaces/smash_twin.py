"""A PyTorch twin of SMASH's main network, written from the reference's forward (ajbrock/SMASH SMASH.py
`forward`, layers.py `SMASHC2D`, `SMASHTransition`, `SMASHBN2D`, `SMASHFC`): ragged lists of banks,
concatenated reads, the generated 1x1 weight sliced from the running row offset and divided by its
norm, the kernel bank cropped and run with PyTorch's dilation, groups and padding, writes added
slice by slice, BN on the used channels. The oracle of tests/spaces/test_smash_network.py (float64)
and the speed peer of benchmarks/bench_smash.py (float32)."""
import functools

import numpy as np
import torch
import torch.nn.functional as tf

from jaxnas.spaces.smash.layout import BLOCKS, OPTIONS


def t64(a, dtype=np.float64):
    """`a` as a tensor (float64 unless `dtype`)."""
    return torch.from_numpy(np.asarray(a, dtype).copy())


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

def to_torch(p, s, dtype=np.float64):
    """The JAX main network's weights (HWIO kernels, [in, out] matrices) in the twin's layout."""
    t = functools.partial(t64, dtype=dtype)
    oihw = lambda a: t(a).permute(3, 2, 0, 1).contiguous()  # noqa: E731
    tp = {"stem": oihw(p["stem"]), "fc": t(p["fc"]), "fc_bias": t(p["fc_bias"]),
          "banks": [[oihw(p["banks"][b][j]) if j in p["banks"][b] else None for j in range(4)]
                    for b in range(BLOCKS)],
          "trans": [t(p["trans"][b]) for b in range(BLOCKS - 1)],
          "trans_bn": [{k: t(v) for k, v in p["trans_bn"][b].items()} for b in range(BLOCKS - 1)],
          "bn": {k: t(v) for k, v in p["bn"].items()}}
    bn_stats = [s["trans_bn"][b] for b in range(BLOCKS - 1)] + [s["bn"]]
    return tp, [(t(st["mean"]), t(st["var"])) for st in bn_stats]


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


def assert_stats_match(got, t_stats):
    """The JAX BN statistics (a list of {"mean", "var"} over the widest channels) equal the twin's on
    the channels in use; the rest stay untouched (zero means)."""
    for st, (mean, var) in zip(got, t_stats):
        c = mean.shape[0]
        np.testing.assert_allclose(np.asarray(st["mean"])[:c], mean.numpy(), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(np.asarray(st["var"])[:c], var.numpy(), rtol=1e-4, atol=1e-5)
        np.testing.assert_array_equal(np.asarray(st["mean"])[c:], 0.0)


def assert_grads_match(grad_leaves, tp):
    """The main network's gradient leaves equal the twin's (after its backward), HWIO against OIHW."""
    scale = max(float(t.grad.abs().max()) for t in leaves(tp) if t.grad is not None)
    for g, t in zip(grad_leaves, leaves(tp)):
        want = np.zeros(t.shape) if t.grad is None else t.grad.numpy()
        if g.ndim == 4:
            want = want.transpose(2, 3, 1, 0)  # OIHW -> HWIO
        np.testing.assert_allclose(np.asarray(g), want, atol=2e-5 * scale)


def note_features(seen, lay, arch):
    """Marks in `seen` the features an architecture's live convs use: non-square kernels, dilations,
    groups, several convs a layer."""
    a = {k: np.asarray(v) for k, v in arch.items()}
    live = np.arange(lay.max_layers)[None] < a["layers"][:, None]
    on = np.asarray(OPTIONS, bool)[a["op"]] & live[..., None]
    seen["non-square"] |= bool((a["kernel"][..., 0] != a["kernel"][..., 1])[on].any())
    seen["dilated"] |= bool((a["dilation"] > 1)[on].any())
    seen["grouped"] |= bool((a["groups"] > 1)[on].any())
    seen["several convs"] |= bool(on.sum(-1).max() > 1)


def var_case(batch=4, side=8):
    """The twin tests' space (tiny sizes, `ops=var`: up to 4 convs a layer, 6 layer slots), images
    and labels."""
    from jaxnas.spaces.smash.config import Smash
    from jaxnas.spaces.smash.space import SmashSpace
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch, side, side, 3)).astype(np.float32)
    return (SmashSpace(Smash(depth=4, width=1, N_max=32, max_layers=6, ops="var")), x,
            rng.integers(0, 10, batch).astype(np.int32), rng)
