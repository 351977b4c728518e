"""The network SMASH trains from scratch for a found architecture (ajbrock/SMASH SMASH.py `MainNet`,
layers.py `Layer` with norm_style "sandwich", `Transition`): one architecture, its own weights, every
shape exact (built from the architecture's host arrays), so one compiled program runs only its real
layers and kernels.

    stem      conv 7x7 (3 -> in_0), no ReLU (unlike the SMASH network)
    layer     BN -> ReLU -> conv 1x1 (n_in -> n_b) -> BN, then the op's convs, each ReLU -> conv
              (kernel, dilation, groups of the architecture, "same" padding, no bias):
              w1(w0(h)) + w3(w2(h)) as the op runs them; the output is written into banks as in SMASH
    block end BN -> ReLU -> conv 1x1 (D bs N -> in_{b+1}) -> avgpool 2; the last block: BN -> ReLU
              -> global average pool -> linear

n_b is the SMASH network's bottleneck without its cut at N_max (up to max_bottleneck x N_max), as
MainNet builds it (docs/smash-reference.md, quirk Q4). Initialisation as in SMASH: orthogonal
convolutions, BN scale 1 and bias 0, PyTorch's default linear layer.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxnas.nn import init as nn_init
from jaxnas.nn import ops
from jaxnas.spaces.smash.layout import BLOCKS, OPTIONS, Layout
from jaxnas.spaces.smash.network import bottleneck


class Kernel(nnx.Module):
    """A bias-free convolution of given geometry, orthogonally initialised (HWIO)."""

    def __init__(self, c_in, c_out, kernel=(1, 1), dilation=(1, 1), groups=1, *, rngs):
        self.dilation, self.groups = tuple(dilation), groups
        self.padding = tuple((k - 1) * d // 2 for k, d in zip(kernel, dilation))
        self.kernel = nnx.Param(nn_init.orthogonal(rngs.params(), (*kernel, c_in // groups, c_out)))

    def __call__(self, x):
        return ops.conv(x, self.kernel[...], padding=self.padding, dilation=self.dilation, groups=self.groups)


class Layer(nnx.Module):
    """One memory-bank layer, sandwich normalisation (layers.py `Layer`)."""

    def __init__(self, layout, n_in, units, op, kernels, dilations, groups, *, rngs):
        n_b = int(bottleneck(layout, n_in, units))
        self.bn_in = ops.BatchNorm(n_in)
        self.squeeze = Kernel(n_in, n_b, rngs=rngs)
        self.bn_mid = ops.BatchNorm(n_b)
        self.active = OPTIONS[op]
        self.convs = nnx.List([
            Kernel(units if j % 2 else n_b, units, kernels[j], dilations[j], groups[j], rngs=rngs)
            if self.active[j] else None for j in range(4)])

    def __call__(self, x, train):
        h = self.bn_mid(self.squeeze(jax.nn.relu(self.bn_in(x, train))), train)

        def conv(j, v):
            return self.convs[j](jax.nn.relu(v))
        y = conv(0, h)
        if self.active[1]:
            y = conv(1, y)
        if self.active[2]:
            z = conv(2, h)
            y = y + (conv(3, z) if self.active[3] else z)
        return y


class SmashNetwork(nnx.Module):
    """One SMASH architecture (host arrays of the space, `space.validate`d) trained from scratch."""

    def __init__(self, arch, layout: Layout, num_classes: int, *, rngs: nnx.Rngs):
        N = layout.N
        plan = []  # per block: (bank size, input banks, ((reads, writes, G) per layer), width)
        self.stem = Kernel(3, layout.in_channels[0], (7, 7), rngs=rngs)
        layers, trans_bn, trans, c = [], [], [], None
        for b in range(BLOCKS):
            bs = int(arch["bank_size"][b])
            nin = layout.in_channels[b] // (bs * N)
            steps = []
            for i in range(int(arch["layers"][b])):
                reads = tuple(int(r) for r in np.flatnonzero(arch["read"][b, i]))
                writes = tuple(int(w) for w in np.flatnonzero(arch["write"][b, i]))
                G = int(arch["G"][b, i])
                steps.append((reads, writes, G))
                layers.append(Layer(layout, len(reads) * bs * N, G * N, int(arch["op"][b, i]),
                                    [tuple(int(v) for v in k) for k in arch["kernel"][b, i]],
                                    [tuple(int(v) for v in d) for d in arch["dilation"][b, i]],
                                    [int(g) for g in arch["groups"][b, i]], rngs=rngs))
            top = max([max(w) + 1 for _, w, _ in steps] + [nin])
            c = top * bs * N
            plan.append((bs, nin, tuple(steps), c))
            if b < BLOCKS - 1:
                trans_bn.append(ops.BatchNorm(c))
                trans.append(Kernel(c, layout.in_channels[b + 1], rngs=rngs))
        self.plan = tuple(plan)
        self.layers, self.trans_bn, self.trans = nnx.List(layers), nnx.List(trans_bn), nnx.List(trans)
        self.bn = ops.BatchNorm(c)
        self.fc = ops.Linear(c, num_classes, rngs=rngs)
        self.N = N

    def __call__(self, x, train: bool = False):
        h = self.stem(x)
        k = 0
        for b, (bs, nin, steps, width) in enumerate(self.plan):
            size = bs * self.N
            banks = [h[..., j * size:(j + 1) * size] for j in range(nin)]
            banks += [None] * (width // size - nin)
            for reads, writes, G in steps:
                y = self.layers[k](jnp.concatenate([banks[r] for r in reads], -1), train)
                k += 1
                for j, w in enumerate(writes):
                    s = j % (G // bs)
                    piece = y[..., s * size:(s + 1) * size]
                    banks[w] = piece if banks[w] is None else banks[w] + piece
            h = jnp.concatenate(banks, -1)
            if b < BLOCKS - 1:
                h = ops.avg_pool_2x2(self.trans[b](jax.nn.relu(self.trans_bn[b](h, train))))
        return self.fc(jax.nn.relu(self.bn(h, train)).mean((1, 2)))
