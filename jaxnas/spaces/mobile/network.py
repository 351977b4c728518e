"""NSE's mobile networks: the pool's operators, the multi-branch cell and the standalone network of
one architecture (orashi/NSE_NAS@939edf2 utils/supernet_utils.py `LinearBottleneck` su:337-404,
`Rec` su:117-194, the cell su:509-524, `ValImageNet` su:797-843; docs/nse-reference.md 1-3).

  MBConv(k, t, d): 1x1 expand -> BN -> ReLU -> kxk depthwise (stride, dilation d) -> BN -> ReLU
                   -> 1x1 project -> BN (the expansion runs for t = 1 too; no residual in the op)
  Rec(k, t):       1x1 expand -> BN -> ReLU -> 1xk (stride along the width) -> BN -> ReLU
                   -> kx1 (stride along the height) -> BN -> ReLU -> 1x1 project -> BN (full convs)
  cell:            identity cell (N): (x + sum of its ops) / (ops + 1), an empty one is x;
                   other cells: the mean of its ops
  network:         3x3 stem (stride 2, 1 in the CIFAR variant) -> BN -> ReLU, the cells, a 1x1 conv to
                   `head` channels -> ReLU (no BN), global average pool, linear classifier

Convolutions start Kaiming-normal (fan_out, ReLU gain: std sqrt(2 / (out channels x kh x kw))), BN
at scale 1 and bias 0, the classifier at PyTorch's default (su:1321-1326).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxnas.nn import ops
from jaxnas.spaces.mobile.layout import Layout


def kaiming_fan_out(key, shape):
    """HWIO kernel ~ N(0, 2 / (C_out kh kw)) (torch.nn.init.kaiming_normal_, mode fan_out, relu)."""
    kh, kw, _, c_out = shape
    return ops.normal(key, shape, np.sqrt(2.0 / (c_out * kh * kw)))


class ConvBN(nnx.Module):
    """Bias-free conv (non-square kernel, stride, dilation, groups) -> BN -> optional ReLU."""

    def __init__(self, c_in, c_out, kernel=(1, 1), stride=(1, 1), padding=(0, 0), dilation=1, groups=1,
                 relu=True, *, rngs: nnx.Rngs):
        self.stride, self.padding, self.dilation = stride, padding, dilation
        self.groups, self.relu = groups, relu
        self.kernel = nnx.Param(kaiming_fan_out(rngs.params(), (*kernel, c_in // groups, c_out)))
        self.bn = ops.BatchNorm(c_out)

    def __call__(self, x, train: bool):
        y = self.bn(ops.conv(x, self.kernel[...], stride=self.stride, padding=self.padding,
                             dilation=self.dilation, groups=self.groups), train)
        return jax.nn.relu(y) if self.relu else y


class MBConv(nnx.Module):
    def __init__(self, c_in, c_out, k, t, d, stride, *, rngs: nnx.Rngs):
        e = c_in * t
        self.expand = ConvBN(c_in, e, rngs=rngs)
        pad = (k + 2 * (d - 1)) // 2  # su:369: d for k = 3, k // 2 undilated
        self.depthwise = ConvBN(e, e, (k, k), (stride, stride), (pad, pad), d, e, rngs=rngs)
        self.project = ConvBN(e, c_out, relu=False, rngs=rngs)

    def __call__(self, x, train: bool):
        return self.project(self.depthwise(self.expand(x, train), train), train)


class Rec(nnx.Module):
    def __init__(self, c_in, c_out, k, t, stride, *, rngs: nnx.Rngs):
        e = c_in * t
        self.expand = ConvBN(c_in, e, rngs=rngs)
        self.wide = ConvBN(e, e, (1, k), (1, stride), (0, k // 2), rngs=rngs)
        self.tall = ConvBN(e, e, (k, 1), (stride, 1), (k // 2, 0), rngs=rngs)
        self.project = ConvBN(e, c_out, relu=False, rngs=rngs)

    def __call__(self, x, train: bool):
        return self.project(self.tall(self.wide(self.expand(x, train), train), train), train)


def make_op(op, c_in: int, c_out: int, stride: int, *, rngs: nnx.Rngs) -> nnx.Module:
    """Pool operator `op` ((kind, kernel, expansion, dilation), `layout.POOL`) from c_in to c_out channels."""
    kind, k, t, d = op
    return MBConv(c_in, c_out, k, t, d, stride, rngs=rngs) if kind == "mb" else Rec(c_in, c_out, k, t, stride,
                                                                                   rngs=rngs)


class Head(nnx.Module):
    """1x1 conv to `head` channels -> ReLU (no BN, su:1341-1358) -> global average pool -> linear."""

    def __init__(self, c_in, head, num_classes, *, rngs: nnx.Rngs):
        self.kernel = nnx.Param(kaiming_fan_out(rngs.params(), (1, 1, c_in, head)))
        self.classifier = ops.Linear(head, num_classes, rngs=rngs)

    def __call__(self, x, train: bool = False):
        del train  # no BN: the same in training (the host path calls every module with it)
        return self.classifier(jax.nn.relu(ops.conv(x, self.kernel[...])).mean((1, 2)))


def cell_output(x, outputs, identity: bool, gates=None):
    """The multi-branch cell's mean (su:509-524): the identity term counts as one branch. With
    `gates` (one weight per output, e.g. 0/1) the gated mean (identity x + sum_j g_j o_j) /
    (identity + sum_j g_j), and x for an identity cell whose gates are all off (or that has no
    outputs)."""
    if gates is None:
        total = sum(outputs, x if identity else 0.0)
        return total / (len(outputs) + int(identity))
    if not outputs:
        return x
    total = sum((g * o for g, o in zip(gates, outputs)), x if identity else 0.0)
    return total / jnp.maximum(sum(gates, jnp.float32(1.0 if identity else 0.0)), 1.0)


class MobileNetwork(nnx.Module):
    """The standalone network of one architecture (a host bool[cells, pool]): only the selected
    operators exist; an empty identity cell passes its input on."""

    def __init__(self, layout: Layout, gates, num_classes: int, *, rngs: nnx.Rngs):
        gates = np.asarray(gates, bool)
        self.layout, self.selected = layout, [tuple(int(i) for i in np.flatnonzero(row)) for row in gates]
        self.stem = ConvBN(3, layout.widths[0], (3, 3), (layout.stem_stride,) * 2, (1, 1), rngs=rngs)
        self.cells = nnx.List([nnx.List([make_op(layout.pool[i], c.cin, c.cout, c.stride, rngs=rngs)
                                         for i in ops_]) for c, ops_ in zip(layout.cells, self.selected)])
        self.head = Head(layout.widths[-1], layout.head, num_classes, rngs=rngs)

    def __call__(self, x, train: bool = True):
        h = self.stem(x, train)
        for cell, ops_ in zip(self.layout.cells, self.cells):
            h = cell_output(h, [op(h, train) for op in ops_], cell.identity)
        return self.head(h)
