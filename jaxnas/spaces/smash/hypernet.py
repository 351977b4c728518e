"""SMASH's HyperNet: a DenseNet over the encoding grid that outputs a network's 1x1 weights.

Follows ajbrock/SMASH SMASH.py (`self.hyperconv`) and layers.py (`WNC2D`, `CL`): convolutions whose
weight is divided by its whole-tensor Frobenius norm (no gain, no bias), LeakyReLU(0.02), no
normalisation layers, no downsampling, orthogonal initialisation. With C input channels ([z, c]):

    CL(conv3x3 -> 7)                                   C + 7      (no activation before it)
    depths[0] x CL(LReLU, conv3x3 -> growth)           dense block
    LReLU, conv3x3 -> half                             transition
    depths[1] x CL(...), transition, depths[2] x CL(...)
    LReLU, conv1x1 -> N * N * depth_compression

CL(m)(x) = concat(x, m(x)): the skip carries x before the activation. The grid is k rows x S_pad
columns; the reference cuts its input after the last used column + 1, so its convolutions see
zeros beyond it. Here every conv output is multiplied by the column mask, which gives the same
numbers at a fixed width (one program for every architecture).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jaxnas.nn import init as nn_init

LEAK = 0.02


class WNConv(nnx.Module):
    """A bias-free conv whose weight is normalised by its Frobenius norm (SMASH's `WNC2D`), NHWC."""

    def __init__(self, c_in: int, c_out: int, size: int, *, rngs: nnx.Rngs):
        # PyTorch's orthogonal_ (on the weight viewed as (out, in * kh * kw)); only its direction matters
        self.kernel = nnx.Param(nn_init.orthogonal(rngs.params(), (size, size, c_in, c_out)))

    def __call__(self, x):
        w = self.kernel[...]
        w = w / jnp.sqrt(jnp.sum(w * w))
        pad = (w.shape[0] - 1) // 2
        return jax.lax.conv_general_dilated(x, w, (1, 1), [(pad, pad), (pad, pad)],
                                            dimension_numbers=("NHWC", "HWIO", "NHWC"))


def widths(c_in: int, growth: int, depths) -> list:
    """(input channels, output channels, kernel size, dense) of every conv, in order."""
    out = [(c_in, 7, 3, True)]
    c = c_in + 7
    for i, depth in enumerate(depths):
        for _ in range(depth):
            out.append((c, growth, 3, True))
            c += growth
        if i < len(depths) - 1:
            out.append((c, c // 2, 3, False))
            c //= 2
    return out, c


class HyperNet(nnx.Module):
    """[z, c] grid [B, k, S_pad, C] -> [B, k, S_pad, N * N * dc] (SMASH.py `hyperconv`)."""

    def __init__(self, c_in: int, c_out: int, *, growth: int = 10, depths=(8, 10, 4), rngs: nnx.Rngs):
        layers, c = widths(c_in, growth, depths)
        self.dense = tuple(d for *_, d in layers)
        self.convs = nnx.List([WNConv(i, o, s, rngs=rngs) for i, o, s, _ in layers])
        self.head = WNConv(c, c_out, 1, rngs=rngs)

    def __call__(self, x, columns):
        """x float32 [B, k, S_pad, C]; columns bool [B, S_pad]: the columns in use."""
        mask = columns[:, None, :, None].astype(x.dtype)
        x = x * mask
        for i, (conv, dense) in enumerate(zip(self.convs, self.dense)):
            y = conv(x if i == 0 else jax.nn.leaky_relu(x, LEAK)) * mask
            x = jnp.concatenate([x, y], -1) if dense else y
        return self.head(jax.nn.leaky_relu(x, LEAK)) * mask


def to_w1x1(out, N: int, dc: int):
    """The HyperNet's output [..., k, S_pad, N * N * dc] as the 1x1 weights [..., S_pad * N * dc, k * N]:
    row s * N * dc + t (input channel t of slice s, in consumption order), column kk * N + u (output
    unit), from channel u * N * dc + t of grid row kk, column s (SMASH.py sample_weights' view and
    index_select)."""
    *lead, k, S, _ = out.shape
    w = out.reshape(*lead, k, S, N, N * dc)                  # [..., kk, s, u, t]
    w = jnp.moveaxis(w, (-4, -3, -2, -1), (-2, -4, -1, -3))  # [..., s, t, kk, u]
    return w.reshape(*lead, S * N * dc, k * N)
