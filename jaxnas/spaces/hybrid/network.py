"""PGNAS's hybrid multi-kernel network for CIFAR, as a supernet whose architecture is a keep-mask
over the input channels of every kernel branch, and the pruned standalone network of one mask.

Zhou et al., AAAI 2020 (arXiv 1906.09557), Sec. 3 and supplement 1.2: the ImageNet supernet
SupNet-R-50 replaces every 3x3 convolution of ResNet-50 by parallel kernels {1x1, 3x3, dilated 3x3,
dilated 5x5} whose outputs are concatenated, the output channels divided equally among them; the
architecture is a binary switch per (layer, kernel size, input channel) (Eq. 13: the channels of
one kernel size in one layer share a drop probability). Here the base network is a CIFAR ResNet
(He et al., 2016, post-activation basic blocks, 1x1 conv + BN shortcut where the shape changes):
a 3x3 stem conv, three stages of `blocks` blocks at C, 2C, 4C channels, global average pool and a
linear classifier. Every conv of every block is hybrid; the stem and the shortcuts stay plain (the
stem's input is the RGB image). Deviation: the paper's CIFAR supernets are shake-shake ResNets
and ENAS cells (supplement 1.1); the ImageNet construction is the one the paper spells out.

The architecture array is bool[L, S, Cmax]: L hybrid layers (`layers`), S kernel branches
(`KERNELS`), Cmax = 4C input channels, padded with False beyond layer l's input channels. The
supernet reads it as
  - `Choice(mask)`: the sub-network of one mask (dropped input channels are zero);
  - `InputGates(gates)`: float gates of the same shape, or [B, L, S, Cmax] with one set per example
    (PGNAS's concrete-dropout training), multiplying each branch's input channels.
A branch whose inputs are all dropped outputs zeros, so its BatchNorm channels give their bias.
`HybridNetwork` is the pruned network of one mask (kept channels only) with the same function;
`inherit` copies a supernet's weights into it.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxnas.nn.ops import BatchNorm, Linear, uniform
from jaxnas.spaces.arch import Choice, InputGates, check

# (name, kernel size, dilation) of the branches (paper: 1x1, 3x3, dilated 3x3 ~ 5x5, dilated 5x5 ~ 9x9)
KERNELS = (("1x1", 1, 1), ("3x3", 3, 1), ("3x3d2", 3, 2), ("5x5d2", 5, 2))
NUM_KERNELS = len(KERNELS)


def layers(C: int, blocks: int) -> list[tuple[int, int, int]]:
    """(input channels, output channels, stride) of every hybrid conv, in forward order."""
    out, c_in = [], C
    for stage, width in enumerate((C, 2 * C, 4 * C)):
        for b in range(blocks):
            stride = 2 if stage > 0 and b == 0 else 1
            out += [(c_in, width, stride), (width, width, 1)]
            c_in = width
    return out


def channel_valid(C: int, blocks: int) -> np.ndarray:
    """bool[L, S, 4C]: the real input channels of each layer's branches (False: padding)."""
    cin = np.array([c for c, _, _ in layers(C, blocks)])
    valid = np.arange(4 * C)[None, :] < cin[:, None]
    return np.repeat(valid[:, None, :], NUM_KERNELS, 1)


def _conv(x, kernel, stride: int, dilation: int):
    pad = dilation * (kernel.shape[0] - 1) // 2
    return jax.lax.conv_general_dilated(x, kernel, (stride, stride), ((pad, pad), (pad, pad)),
                                        rhs_dilation=(dilation, dilation),
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))


class HybridConv(nnx.Module):
    """Parallel kernel branches over the same input, outputs concatenated, each branch c_out/S
    channels; `kept[s]` lists the input channels branch s keeps (all in the supernet)."""

    def __init__(self, c_in, c_out, stride, kept=None, *, rngs):
        self.stride = stride
        self.kept = tuple(tuple(range(c_in)) for _ in KERNELS) if kept is None else tuple(map(tuple, kept))
        self.kernels = nnx.List([
            nnx.Param(uniform(rngs.params(), (k, k, len(ks), c_out // NUM_KERNELS), max(len(ks), 1) * k * k))
            for (_, k, _), ks in zip(KERNELS, self.kept)])

    def __call__(self, x, gates=None):
        """`gates`: None (the kept channels as they are), [S, c_in] (one mask for the batch: folded
        into the kernels) or [B, S, c_in] (per example: scales the input)."""
        outs = []
        for s, (_, _, dilation) in enumerate(KERNELS):
            w = self.kernels[s][...]
            if not self.kept[s]:  # a pruned-away branch: zeros ("same" padding: ceil(size / stride) pixels)
                n, h, wd, _ = x.shape
                outs.append(jnp.zeros((n, -(-h // self.stride), -(-wd // self.stride), w.shape[3]), x.dtype))
                continue
            xs = x if len(self.kept[s]) == x.shape[-1] else x[..., np.asarray(self.kept[s])]
            if gates is not None and gates.ndim == 2:
                w = w * gates[s][None, None, :, None].astype(w.dtype)
            elif gates is not None:
                xs = xs * gates[:, s][:, None, None, :].astype(xs.dtype)
            outs.append(_conv(xs, w, self.stride, dilation))
        return jnp.concatenate(outs, -1)


class HybridBlock(nnx.Module):
    """Post-activation basic block: hconv -> BN -> ReLU -> hconv -> BN, + shortcut, ReLU."""

    def __init__(self, c_in, c_out, stride, kept=(None, None), *, rngs):
        self.conv_a = HybridConv(c_in, c_out, stride, kept[0], rngs=rngs)
        self.bn_a = BatchNorm(c_out)
        self.conv_b = HybridConv(c_out, c_out, 1, kept[1], rngs=rngs)
        self.bn_b = BatchNorm(c_out)
        self.has_shortcut = stride != 1 or c_in != c_out
        if self.has_shortcut:
            self.shortcut = nnx.Param(uniform(rngs.params(), (1, 1, c_in, c_out), c_in))
            self.bn_s = BatchNorm(c_out)

    def __call__(self, x, train, gates=(None, None)):
        h = jax.nn.relu(self.bn_a(self.conv_a(x, gates[0]), train))
        h = self.bn_b(self.conv_b(h, gates[1]), train)
        s = self.conv_a.stride
        short = self.bn_s(_conv(x, self.shortcut[...], s, 1), train) if self.has_shortcut else x
        return jax.nn.relu(h + short)


class _Net(nnx.Module):
    def __init__(self, C, blocks, num_classes, kept, *, rngs):
        if C % NUM_KERNELS:
            raise ValueError(f"the hybrid network divides channels among {NUM_KERNELS} kernels: C must be a "
                             f"multiple of {NUM_KERNELS}, got {C}")
        self.C, self.n_blocks, self.num_classes = C, blocks, num_classes
        self.stem = nnx.Param(uniform(rngs.params(), (3, 3, 3, C), 27))
        self.stem_bn = BatchNorm(C)
        spec = layers(C, blocks)
        self.blocks = nnx.List([
            HybridBlock(spec[2 * i][0], spec[2 * i][1], spec[2 * i][2], (kept[2 * i], kept[2 * i + 1]),
                        rngs=rngs)
            for i in range(len(spec) // 2)])
        self.classifier = Linear(4 * C, num_classes, rngs=rngs)

    def _forward(self, x, train, gates_of):
        h = jax.nn.relu(self.stem_bn(_conv(x, self.stem[...], 1, 1), train))
        for i, block in enumerate(self.blocks):
            h = block(h, train, (gates_of(2 * i), gates_of(2 * i + 1)))
        return self.classifier(h.mean((1, 2)))


class HybridSuperNet(_Net):
    """Every branch keeps every input channel; the architecture (mask or gates) is an argument."""

    def __init__(self, C: int = 16, blocks: int = 4, num_classes: int = 10, *, rngs: nnx.Rngs):
        super().__init__(C, blocks, num_classes, [None] * len(layers(C, blocks)), rngs=rngs)

    def __call__(self, x, arch, train: bool = True, *, forward_only: bool = False):
        """Logits of `arch` (`Choice` of a bool mask or `InputGates`, shapes in the module docstring).
        `forward_only` is accepted for the candidate evaluator and changes nothing."""
        check(arch, (Choice, InputGates))
        a = jnp.asarray(arch.value)
        spec = layers(self.C, self.n_blocks)
        want = (len(spec), NUM_KERNELS, 4 * self.C)
        per_example = isinstance(arch, InputGates) and a.ndim == 4
        if tuple(a.shape[per_example:]) != want or (per_example and a.shape[0] != x.shape[0]):
            raise ValueError(f"{type(arch).__name__} takes a hybrid architecture of shape {want}"
                             f"{' (or [batch, ...] gates)' if isinstance(arch, InputGates) else ''}, got "
                             f"{a.shape}")
        a = a.astype(x.dtype)

        def gates_of(layer):
            cin = spec[layer][0]
            return a[:, layer, :, :cin] if per_example else a[layer, :, :cin]

        return self._forward(x, train, gates_of)


class HybridNetwork(_Net):
    """The pruned network of one mask: each branch holds kernels for its kept input channels only."""

    def __init__(self, arch, C: int = 16, blocks: int = 4, num_classes: int = 10, *, rngs: nnx.Rngs):
        mask = np.asarray(arch, bool)
        kept = [[np.flatnonzero(mask[layer, s, :cin]).tolist() for s in range(NUM_KERNELS)]
                for layer, (cin, _, _) in enumerate(layers(C, blocks))]
        super().__init__(C, blocks, num_classes, kept, rngs=rngs)

    def __call__(self, x, train: bool = False):
        return self._forward(x, train, lambda layer: None)


def inherit(supernet: HybridSuperNet, arch) -> HybridNetwork:
    """The pruned network of `arch` carrying the supernet's weights (PGNAS's (mask, weights) pair as
    a standalone network) and BatchNorm statistics."""
    net = HybridNetwork(arch, supernet.C, supernet.n_blocks, supernet.num_classes, rngs=nnx.Rngs(0))
    for sblock, block in zip(supernet.blocks, net.blocks):
        for name in ("conv_a", "conv_b"):
            sconv, conv = getattr(sblock, name), getattr(block, name)
            for s, ks in enumerate(conv.kept):
                conv.kernels[s][...] = sconv.kernels[s][...][:, :, np.asarray(ks, int), :]
    # everything else (stem, BatchNorms, shortcuts, classifier) has the supernet's shapes
    nnx.update(net,
               jax.tree.map(lambda s, n: s if s.shape == n.shape else n, nnx.state(supernet), nnx.state(net)))
    return net
