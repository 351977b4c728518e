"""NB201 operations as Flax NNX modules, NHWC, with PyTorch semantics exactly.

Follows xautodl/models/cell_operations.py (ReLUConvBN, POOLING, Zero, Identity, ResNetBasicblock):
padding is explicit and symmetric as in PyTorch, average pooling excludes padding from its divisor,
BatchNorm uses batch statistics in training, momentum 0.1, eps 1e-5, and an *unbiased* running
variance. Initialisation follows PyTorch's defaults (uniform +-1/sqrt(fan_in)).

Generic functional pieces beside them: `conv` (torch.nn.functional.conv2d with stride, padding,
dilation, groups and non-square kernels) and `weight_norm` (torch.nn.utils.weight_norm).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

BN_MOMENTUM = 0.1
BN_EPS = 1e-5


def uniform(key, shape, fan_in):
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)), seeded by `key`.

    Drawn with numpy from the key's bits: jax.random.uniform compiles once per shape on XLA:CPU
    (1-13 s each), which made building a supernet take over a minute. Under tracing (eval_shape,
    jit) the key has no value, so JAX draws instead.
    """
    bound = 1.0 / np.sqrt(fan_in)
    if isinstance(key, jax.core.Tracer):
        return jax.random.uniform(key, shape, jnp.float32, -bound, bound)
    return jnp.asarray(_host_rng(key).uniform(-bound, bound, shape).astype(np.float32))


def normal(key, shape, std: float):
    """N(0, std²), seeded by `key`; drawn with numpy as `uniform` is (JAX draws under tracing)."""
    if isinstance(key, jax.core.Tracer):
        return std * jax.random.normal(key, shape, jnp.float32)
    return jnp.asarray((std * _host_rng(key).standard_normal(shape)).astype(np.float32))


def _host_rng(key) -> np.random.Generator:
    """A numpy generator seeded by a concrete JAX key's bits."""
    return np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel().tolist())


def _conv(x, kernel, stride: int, padding: int):
    return jax.lax.conv_general_dilated(
        x, kernel, (stride, stride), ((padding, padding), (padding, padding)),
        dimension_numbers=("NHWC", "HWIO", "NHWC"))


WGRAD_CHUNK = 8  # examples per chunk of the CPU kernel gradient (benchmarks/BENCHMARKS.md, section 1)
WGRAD_MIN_PIXELS = 32 * 32  # inputs smaller than this keep XLA's kernel gradient


def wgrad_chunks(batch: int, pixels: int) -> int:
    """How many batch chunks a convolution's kernel gradient is summed over (1: XLA's own).

    XLA:CPU computes the kernel gradient on one core; at batch 64 and 32x32 inputs (NB201's first
    stage) the sum over 8-example chunks is 2.5x faster without YNNPACK (21.4 -> 9.2 ms) and 1.3x
    with it (11.6 -> 8.7 ms). On 16x16 and 8x8 inputs YNNPACK's own kernel gradient is faster
    (6.3 vs 10.5, 4.9 vs 7.9 ms), so only inputs of at least 32x32 pixels are chunked. Other
    backends: 1 (`benchmarks/archive/conv_kernels.py`)."""
    if (jax.default_backend() != "cpu" or pixels < WGRAD_MIN_PIXELS or batch % WGRAD_CHUNK
            or batch <= WGRAD_CHUNK):
        return 1
    return batch // WGRAD_CHUNK


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def conv2d(x, kernel, stride: int = 1, padding: int = 0):
    """NHWC convolution with an HWIO kernel and symmetric PyTorch-style padding.

    Its gradient is XLA's, except that on CPU the kernel gradient is summed over batch chunks
    (`wgrad_chunks`): the same value up to float summation order, 2-3x faster there."""
    return _conv(x, kernel, stride, padding)


def _conv2d_fwd(x, kernel, stride, padding):
    return _conv(x, kernel, stride, padding), (x, kernel)


def _conv2d_bwd(stride, padding, res, g):
    x, kernel = res
    grad_x = jax.vjp(lambda a: _conv(a, kernel, stride, padding), x)[1](g)[0]
    k = wgrad_chunks(x.shape[0], x.shape[1] * x.shape[2])  # 1: one chunk, XLA's own kernel gradient
    n = x.shape[0] // k
    grad_w = None
    for i in range(k):
        part = jax.vjp(lambda w, xi=x[i * n:(i + 1) * n]: _conv(xi, w, stride, padding),
                       kernel)[1](g[i * n:(i + 1) * n])[0]
        grad_w = part if grad_w is None else grad_w + part
    return grad_x, grad_w


conv2d.defvjp(_conv2d_fwd, _conv2d_bwd)


def _pair(v, name: str) -> tuple[int, int]:
    """An int or an (h, w) pair as an (h, w) pair of ints."""
    if isinstance(v, (int, np.integer)):
        return int(v), int(v)
    if isinstance(v, (tuple, list)) and len(v) == 2 and all(isinstance(a, (int, np.integer)) for a in v):
        return int(v[0]), int(v[1])
    raise ValueError(f"{name} must be an int or an (h, w) pair of ints, got {v!r}")


def _conv_padding(padding, kernel_hw, dilation, stride) -> tuple[tuple[int, int], tuple[int, int]]:
    """((top, bottom), (left, right)) from an int, an (h, w) pair, ((top, bottom), (left, right)),
    "valid" or "same" (torch.nn.functional.conv2d's rules: "same" needs stride 1; an even effective
    kernel puts the extra row / column at the bottom / right)."""
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0), (0, 0)
        if padding != "same":
            raise ValueError(f"padding must be an int, a pair, 'valid' or 'same', got {padding!r}")
        if stride != (1, 1):
            raise ValueError(f"padding='same' needs stride 1 (as in PyTorch), got stride {stride}")
        total = [d * (k - 1) for k, d in zip(kernel_hw, dilation)]
        return tuple((t // 2, t - t // 2) for t in total)
    if (isinstance(padding, (tuple, list)) and len(padding) == 2
            and all(isinstance(p, (tuple, list)) for p in padding)):
        return _pair(tuple(padding[0]), "padding[0]"), _pair(tuple(padding[1]), "padding[1]")
    ph, pw = _pair(padding, "padding")
    return (ph, ph), (pw, pw)


# XLA:CPU runs grouped convolutions ~20x slower than dense ones of the same shape (a 3x3 conv, 32
# channels, 4 groups, batch 50 at 32x32, gradient: 714 against 34 ms; BENCHMARKS.md section 15), so on
# CPU a conv of at most this many groups runs as the dense conv of its block-diagonal kernel (the
# same sums, plus exact zeros). Depthwise convs (groups = channels, one output per channel): see
# `depthwise_form`.
DENSE_GROUPS = 8


def depthwise_form(channels: int, kh: int, kw: int) -> str:
    """How a depthwise conv (groups = C_in = C_out) runs on CPU: "dense" (the block-diagonal kernel:
    C x the multiply-adds, one fast XLA conv) while channels <= kh kw, else "taps" (a sum of kh kw
    shifted products, one memory pass each). XLA's own grouped form was 2-5x slower than the better
    of the two in every measured case (BENCHMARKS.md 16b); other backends keep it ("grouped")."""
    if jax.default_backend() != "cpu":
        return "grouped"
    return "dense" if channels <= kh * kw else "taps"


def depthwise_taps(x, kernel, stride, pad, dilation):
    """A depthwise conv (HWIO kernel (kh, kw, 1, C)) as the sum over taps of the shifted, strided
    input times that tap's per-channel weight: the same sums as the conv, in another order."""
    kh, kw = kernel.shape[:2]
    (sh, sw), (dh, dw) = stride, dilation
    xp = jnp.pad(x, ((0, 0), pad[0], pad[1], (0, 0)))
    ho = (xp.shape[1] - dh * (kh - 1) - 1) // sh + 1
    wo = (xp.shape[2] - dw * (kw - 1) - 1) // sw + 1
    out = None
    for a in range(kh):
        for b in range(kw):
            rows = slice(a * dh, a * dh + sh * (ho - 1) + 1, sh)
            cols = slice(b * dw, b * dw + sw * (wo - 1) + 1, sw)
            tap = xp[:, rows, cols] * kernel[a, b, 0]
            out = tap if out is None else out + tap
    return out


def block_diagonal(kernel, groups: int):
    """The HWIO kernel (kh, kw, C_in // groups, C_out) of a grouped conv as the dense kernel
    (kh, kw, C_in, C_out) of the same convolution: zero outside each group's block."""
    kh, kw, c_in_g, c_out = kernel.shape
    c_out_g = c_out // groups
    same = (np.arange(c_in_g * groups)[:, None] // c_in_g) == (np.arange(c_out)[None, :] // c_out_g)
    return jnp.where(same, jnp.tile(kernel, (1, 1, groups, 1)), jnp.zeros((), kernel.dtype))


def conv(x, kernel, *, stride=1, padding=0, dilation=1, groups: int = 1):
    """torch.nn.functional.conv2d(x, w, stride=, padding=, dilation=, groups=) for NHWC `x` and an
    HWIO `kernel` of shape (kh, kw, C_in // groups, C_out), kh and kw free (non-square kernels).

    `stride`, `dilation`: an int or an (h, w) pair. `padding`: an int or an (h, w) pair (symmetric,
    zeros, as PyTorch), ((top, bottom), (left, right)), "valid", or "same" (stride 1 only, as in
    PyTorch). `groups` splits input and output channels into that many contiguous groups as PyTorch
    does (depthwise: groups == C_in); the HWIO kernel is PyTorch's OIHW weight transposed
    (2, 3, 1, 0). Used by SMASH (Brock et al., ICLR 2018: dilated, grouped, non-square convs
    sliced from a shared kernel bank) and NSE's MBConv cells (Ci et al., ICCV 2021: depthwise).

    On CPU a conv of up to `DENSE_GROUPS` groups runs as the dense conv of its block-diagonal kernel,
    and a depthwise conv as `depthwise_form` says.
    Without dilation and groups and with equal strides and symmetric, equal paddings this is
    `conv2d` (the same XLA convolution, so the same values, and on CPU its chunked kernel gradient:
    equal to XLA's own up to float summation order, 2-3x faster there). Otherwise
    `jax.lax.conv_general_dilated` with XLA's gradient.
    """
    stride, dilation = _pair(stride, "stride"), _pair(dilation, "dilation")
    kh, kw, c_in_g, c_out = kernel.shape
    if groups < 1 or x.shape[-1] % groups or c_out % groups or x.shape[-1] // groups != c_in_g:
        raise ValueError(f"groups={groups} does not fit input channels {x.shape[-1]}, kernel {kernel.shape} "
                         "(HWIO: kh, kw, C_in // groups, C_out; both channel counts divisible by groups)")
    pad = _conv_padding(padding, (kh, kw), dilation, stride)
    if groups > 1 and groups == x.shape[-1] == c_out:
        form = depthwise_form(groups, kh, kw)
        if form == "taps":
            return depthwise_taps(x, kernel, stride, pad, dilation)
        if form == "dense":
            kernel, groups = block_diagonal(kernel, groups), 1
    if 1 < groups <= DENSE_GROUPS and jax.default_backend() == "cpu":
        kernel, groups = block_diagonal(kernel, groups), 1
    if (dilation == (1, 1) and groups == 1 and stride[0] == stride[1]
            and pad[0][0] == pad[0][1] == pad[1][0] == pad[1][1]):
        return conv2d(x, kernel, stride[0], pad[0][0])
    return jax.lax.conv_general_dilated(
        x, kernel, stride, pad, rhs_dilation=dilation, feature_group_count=groups,
        dimension_numbers=("NHWC", "HWIO", "NHWC"))


def weight_norm_g(v, axis: int | None = -1):
    """The norm of `v` over every axis but `axis` (over the whole tensor when None), shaped
    (v.shape[axis],) (a scalar when None): torch.nn.utils.weight_norm's initial g, so that
    `weight_norm(v, weight_norm_g(v, axis), axis) == v` at first."""
    if axis is None:
        return jnp.sqrt(jnp.sum(jnp.square(v)))
    axis = axis % v.ndim
    return jnp.sqrt(jnp.sum(jnp.square(v), axis=tuple(a for a in range(v.ndim) if a != axis)))


def weight_norm(v, g, axis: int | None = -1):
    """Weight normalisation (Salimans & Kingma, NeurIPS 2016): w = g * v / ||v||, the norm over
    every axis of `v` but the output axis `axis`; torch.nn.utils.weight_norm(module, dim=0)'s
    `_weight_norm(v, g, 0)` (computed, as there, as v * (g / ||v||)).

    Output axis last in this library: -1 (the default) both for HWIO conv kernels (PyTorch's dim 0
    of OIHW) and for [in, out] dense kernels (dim 0 of PyTorch's [out, in]). `g`: shape
    (v.shape[axis],), or already broadcastable against `v`. `axis=None`: the norm of the whole
    tensor and a scalar `g` (PyTorch's dim=None; SMASH's `wn2d` is this with g = 1).
    """
    if axis is None:
        return v * (g / jnp.sqrt(jnp.sum(jnp.square(v))))
    axis = axis % v.ndim
    norm = jnp.sqrt(jnp.sum(jnp.square(v), axis=tuple(a for a in range(v.ndim) if a != axis), keepdims=True))
    g = jnp.asarray(g)
    if g.ndim == 1 and v.ndim > 1:
        g = g.reshape([-1 if a == axis else 1 for a in range(v.ndim)])
    return v * (g / norm)


@functools.cache
def _pool_divisor(h: int, w: int) -> np.ndarray:
    """Number of non-padding cells under each 3x3 window (count_include_pad=False)."""
    ones = np.pad(np.ones((h, w), np.float32), 1)
    cnt = sum(ones[i:i + h, j:j + w] for i in range(3) for j in range(3))
    return cnt[None, :, :, None]


def avg_pool_3x3(x):
    """3x3 average pooling, stride 1, padding 1, padding not counted (NB201's avg_pool_3x3)."""
    # separable sums of shifted slices: forward and backward are plain adds (2x faster than
    # reduce_window's backward on XLA:CPU)
    p = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    rows = p[:, :-2] + p[:, 1:-1] + p[:, 2:]
    s = rows[:, :, :-2] + rows[:, :, 1:-1] + rows[:, :, 2:]
    return s / _pool_divisor(x.shape[1], x.shape[2]).astype(x.dtype)


def avg_pool_2x2(x):
    """2x2 average pooling with stride 2 (the ResNet block's shortcut)."""
    n, h, w, c = x.shape
    return x.reshape(n, h // 2, 2, w // 2, 2, c).mean((2, 4))


def batch_norm(x, scale, bias, mean, var, *, train: bool, track: bool):
    """Functional BatchNorm2d. Returns (y, (new_mean, new_var)); stats are None when not tracked.

    Uses batch statistics when `train` or when running statistics are not tracked (PyTorch's rule).
    """
    if train or not track:
        bmean = x.mean((0, 1, 2))
        bvar = jnp.square(x - bmean).mean((0, 1, 2))
        y = (x - bmean) * jax.lax.rsqrt(bvar + BN_EPS)
        if track and train:
            n = x.shape[0] * x.shape[1] * x.shape[2]
            mean = (1 - BN_MOMENTUM) * mean + BN_MOMENTUM * bmean
            var = (1 - BN_MOMENTUM) * var + BN_MOMENTUM * bvar * (n / max(n - 1, 1))
    else:
        y = (x - mean) * jax.lax.rsqrt(var + BN_EPS)
    if scale is not None:
        y = y * scale + bias
    return y, (mean, var)


class BatchNorm(nnx.Module):
    """BatchNorm2d over NHWC channels; affine parameters and running statistics optional."""

    def __init__(self, channels: int, affine: bool = True, track_running_stats: bool = True):
        self.affine, self.track = affine, track_running_stats
        if affine:
            self.scale = nnx.Param(jnp.ones((channels,), jnp.float32))
            self.bias = nnx.Param(jnp.zeros((channels,), jnp.float32))
        if track_running_stats:
            self.mean = nnx.BatchStat(jnp.zeros((channels,), jnp.float32))
            self.var = nnx.BatchStat(jnp.ones((channels,), jnp.float32))

    def params(self):
        """(scale, bias, mean, var) as arrays, None where absent."""
        return (self.scale[...] if self.affine else None, self.bias[...] if self.affine else None,
                self.mean[...] if self.track else None, self.var[...] if self.track else None)

    def set_stats(self, stats):
        if self.track:
            self.mean[...], self.var[...] = stats

    def __call__(self, x, train: bool):
        y, stats = batch_norm(x, *self.params(), train=train, track=self.track)
        self.set_stats(stats)
        return y


class Conv(nnx.Module):
    """Bias-free convolution with an HWIO kernel and PyTorch's default initialisation."""

    def __init__(self, c_in: int, c_out: int, k: int, stride: int = 1, padding: int = 0, *, rngs: nnx.Rngs):
        self.stride, self.padding = stride, padding
        self.kernel = nnx.Param(uniform(rngs.params(), (k, k, c_in, c_out), c_in * k * k))

    def __call__(self, x):
        return conv2d(x, self.kernel[...], self.stride, self.padding)


class ReLUConvBN(nnx.Module):
    """ReLU -> Conv(k, stride, padding) -> BN (nor_conv_1x1 / nor_conv_3x3 / ResNet convs)."""

    def __init__(self, c_in, c_out, k, stride, padding, affine=True, track_running_stats=True, *, rngs):
        self.conv = Conv(c_in, c_out, k, stride, padding, rngs=rngs)
        self.bn = BatchNorm(c_out, affine, track_running_stats)

    def __call__(self, x, train: bool):
        return self.bn(self.conv(jax.nn.relu(x)), train)


class Linear(nnx.Module):
    """Dense layer with PyTorch's default initialisation; kernel is [in, out]."""

    def __init__(self, c_in: int, c_out: int, *, rngs: nnx.Rngs):
        self.kernel = nnx.Param(uniform(rngs.params(), (c_in, c_out), c_in))
        self.bias = nnx.Param(uniform(rngs.params(), (c_out,), c_in))

    def __call__(self, x):
        return x @ self.kernel[...] + self.bias[...]


class ResNetBlock(nnx.Module):
    """NB201's reduction cell: ResNet basic block, stride 2, AvgPool2d(2)+Conv1x1 shortcut."""

    def __init__(self, c_in, c_out, affine=True, track_running_stats=True, *, rngs):
        self.conv_a = ReLUConvBN(c_in, c_out, 3, 2, 1, affine, track_running_stats, rngs=rngs)
        self.conv_b = ReLUConvBN(c_out, c_out, 3, 1, 1, affine, track_running_stats, rngs=rngs)
        self.shortcut = Conv(c_in, c_out, 1, rngs=rngs)

    def __call__(self, x, train: bool, tap=None):
        if tap:
            tap(x)  # conv_a's ReLU input
        h = self.conv_a(x, train)
        if tap:
            tap(h)  # conv_b's ReLU input
        return self.shortcut(avg_pool_2x2(x)) + self.conv_b(h, train)


class Stem(nnx.Module):
    """Conv3x3(3 -> C) + BN."""

    def __init__(self, c_in, c_out, *, rngs):
        self.conv = Conv(c_in, c_out, 3, 1, 1, rngs=rngs)
        self.bn = BatchNorm(c_out)

    def __call__(self, x, train: bool):
        return self.bn(self.conv(x), train)


class Head(nnx.Module):
    """BN -> ReLU -> global average pool -> linear classifier."""

    def __init__(self, c_in, num_classes, *, rngs):
        self.bn = BatchNorm(c_in)
        self.classifier = Linear(c_in, num_classes, rngs=rngs)

    def __call__(self, x, train: bool, tap=None):
        h = self.bn(x, train)
        if tap:
            tap(h)  # the last ReLU's input
        return self.classifier(jax.nn.relu(h).mean((1, 2)))
