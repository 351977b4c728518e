"""SMASH's network: the HyperNet generates the 1x1 weights of a memory-bank main network from an
architecture's encoding (Brock et al., ICLR 2018, section 3; ajbrock/SMASH SMASH.py `forward`,
layers.py `SMASHC2D`, `SMASHLayer`, `SMASHTransition`, `SMASHBN2D`, `SMASHFC`).

    logits = SmashNet(x, Choice(candidate), train)        # the supernet call protocol

`candidate` is an architecture of the space (`space.py`) plus "z" (float32 [k, S_pad], the noise
the HyperNet reads beside the encoding; one per candidate, `noise`) and, with
`smash.encoding=reference`, "max_kernel" (the annealed bound the encoding's field widths follow).

The main network, per block b (memory of W_b channels, banks of bs * N channels):
    memory  = the block input's first (in_b // (bs N)) banks, the rest zero (leftover channels
              dropped, as in the reference)
    layer   h = relu(WN(1x1 generated)(concat of its read banks))   the 1x1 rows in consumption order
            y = conv_kxk(relu(h)) from the block's shared kernel bank: the first G N outputs and the
                first n_b / groups inputs, the kernel centre-cropped, dilated, grouped
                (with several convs: w1(w0(h)) + w3(w2(h)), each conv relu -> conv)
            bank w_j += output slice (j mod G / bs) of y, for the j-th written bank
    block end: BN over the used channels (the first D bs N), relu, 1x1 conv to in_{b+1}, avgpool 2
    head: BN, relu, global average pool, linear (its weight's first D bs N columns)

Every shape is static (one compiled program for every architecture): reads and writes are dense
matrices over the memory's channels (zero rows for unread banks), the 1x1 weights a dense
[W_b, N_max] matrix gathered from the HyperNet's rows, and the sliced conv one dense kernel of the
largest extent (`Layout.extent`) whose taps sit at their dilated positions and whose group
structure is a mask. Padding layer slots add nothing. BN normalises every channel and then zeroes
those beyond the block's used width; running statistics are updated only for the used channels.
On CPU the layer slots are unrolled (a conv's gradient inside a loop or a conditional runs 10-30x
slower on XLA:CPU, BENCHMARKS.md section 15); elsewhere they are scanned. On CPU SMASH runs
`eager.py` instead by default (`smash.impl`): the same network at exact shapes, 20x faster there.

Deviation: the convs an `ops` setting never runs (op 1-3 with `single`, the reference default)
are not allocated; the reference allocates them and never reads them.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jaxnas.nn import init as nn_init
from jaxnas.nn import ops
from jaxnas.spaces.arch import Choice, check
from jaxnas.spaces.smash import encoding
from jaxnas.spaces.smash.hypernet import HyperNet, to_w1x1
from jaxnas.spaces.smash.layout import BLOCKS, CONVS, OPTION_PROBS, OPTIONS, Layout
from jaxnas.spaces.smash.sampler import LAYER_FIELDS


def noise(key, layout: Layout, k: int | None = None):
    """z ~ N(0, I): float32 [k, S_pad] (one candidate) or [K, k, S_pad]."""
    shape = (layout.k, encoding.grid_columns(layout))
    return jax.random.normal(key, shape if k is None else (k, *shape), jnp.float32)


def with_noise(arch, z, max_kernel=None):
    """The candidate the network reads: the architecture's arrays plus its noise (and the annealed
    kernel bound, for the reference encoding)."""
    out = {**arch, "z": z}
    if max_kernel is not None:
        out["max_kernel"] = max_kernel
    return out


def bottleneck(layout: Layout, n_in, units):
    """n_b, a layer's 1x1 outputs for n_in inputs and units = G N outputs (SMASH.py forward and
    MainNet): up to `bottleneck` x units, at most n_in and max_bottleneck x N_max. Traceable; the
    SMASH network cuts it further at N_max, MainNet does not."""
    widen = jnp.minimum(jnp.maximum(n_in // jnp.maximum(units, 1), 1), layout.bottleneck)
    return jnp.minimum(jnp.minimum(widen * units, n_in), layout.max_bottleneck * layout.N_max)


def used_channels(layout: Layout, arch):
    """int32 [..., 3]: the channels each block's output uses, D_b bs N (SMASH.py forward: the banks
    up to the last one its input fills or a layer writes). Traceable."""
    live = jnp.arange(layout.max_layers) < arch["layers"][..., :, None]
    top = jnp.where(arch["write"] & live[..., None], jnp.arange(layout.max_banks) + 1, 0).max((-2, -1))
    size = arch["bank_size"] * layout.N
    return jnp.maximum(top, jnp.asarray(layout.in_channels) // size) * size


def convs_used(layout: Layout) -> tuple:
    """Which of a layer's 4 convs some op configuration of `layout.ops` runs."""
    probs = OPTION_PROBS[layout.ops]
    return tuple(any(p > 0 and OPTIONS[o][j] for o, p in enumerate(probs)) for j in range(CONVS))


class MaskedBatchNorm(ops.BatchNorm):
    """BatchNorm2d over the first `width` channels of a wider tensor (SMASH's `SMASHBN2D` sliced to
    the channels in use): the rest are zero on output and keep their running statistics."""

    def __call__(self, x, width, train: bool):
        on = jnp.arange(x.shape[-1]) < width
        y, (mean, var) = ops.batch_norm(x, *self.params(), train=train, track=True)
        if train:
            self.mean[...] = jnp.where(on, mean, self.mean[...])
            self.var[...] = jnp.where(on, var, self.var[...])
        return jnp.where(on, y, 0.0)


def _placement(size, centre, dilation, extent):
    """[extent, bank_side]: tap a of a `bank_side` kernel to its position in a dense `extent` kernel
    for a centre crop of `size` taps at `dilation` (zero rows for the taps cropped away)."""
    a = jnp.arange(centre * 2 + 1) - centre
    inside = jnp.abs(a) <= (size - 1) // 2
    pos = extent // 2 + a * dilation
    return jnp.where(inside[:, None], jax.nn.one_hot(pos, extent, dtype=jnp.float32), 0.0).T


def sliced_kernel(bank, kernel, dilation, groups, c_in, c_out, extent: int):
    """The dense [extent, extent, I, O] kernel of SMASH's sliced conv (layers.py `SMASHC2D`):
    `bank` [K, K, >=I, >=O] cropped to `kernel` (h, w) around its centre, taps `dilation` apart,
    `groups` groups over the first `c_in` inputs and `c_out` outputs (each group reading the same
    first c_in / groups input columns of the bank, as the reference's weight slice does); zeros
    elsewhere, so conv(x, it) with "same" padding is the reference's conv on x's first c_in channels."""
    size = bank.shape[0]
    i = jnp.arange(bank.shape[2])
    o = jnp.arange(bank.shape[3])
    per_in = jnp.maximum(c_in // groups, 1)
    per_out = jnp.maximum(c_out // groups, 1)
    w = bank[:, :, i % per_in, :]                                        # each input's column in its group
    mask = ((i[:, None] // per_in) == (o[None, :] // per_out)) & (i[:, None] < c_in) & (o[None, :] < c_out)
    w = jnp.where(mask, w, 0.0)
    ph = _placement(kernel[0], size // 2, dilation[0], extent)
    pw = _placement(kernel[1], size // 2, dilation[1], extent)
    return jnp.einsum("pa,qb,abio->pqio", ph, pw, w)


class MainNet(nnx.Module):
    """The memory-bank network's own weights and forward, given the generated 1x1 weights."""

    def __init__(self, layout: Layout, num_classes: int, *, unroll: bool = True, rngs: nnx.Rngs):
        self.layout, self.unroll = layout, unroll
        n, mk = layout.N_max, layout.max_kernel
        c0 = layout.in_channels[0]
        self.stem = nnx.Param(nn_init.orthogonal(rngs.params(), (7, 7, 3, c0)))
        used = convs_used(layout)
        # conv j's bank (SMASH.py `SMASHLayer(max_bottleneck N_max, N_max, max_kernel)`): op 0 and 2
        # read the 1x1 output, op 1 and 3 the G N outputs of op 0 and 2; only the first N_max inputs
        # of op 0 and 2 can be read (n_b is cut at N_max), so only they are kept, drawn as the
        # reference's whole (orthogonal over max_bottleneck N_max inputs: the same scale)
        def bank(j):
            wide = layout.max_bottleneck * n if j % 2 == 0 else n
            return nnx.Param(nn_init.orthogonal(rngs.params(), (mk, mk, wide, n))[:, :, :n])
        self.banks = nnx.List([nnx.List([bank(j) if used[j] else None for j in range(CONVS)])
                               for _ in range(BLOCKS)])
        self.trans_bn = nnx.List([MaskedBatchNorm(layout.widths[b]) for b in range(BLOCKS - 1)])
        self.trans = nnx.List([
            nnx.Param(nn_init.orthogonal(rngs.params(), (layout.widths[b], layout.in_channels[b + 1])))
            for b in range(BLOCKS - 1)])
        w = layout.widths[-1]
        self.bn = MaskedBatchNorm(w)
        self.fc = nnx.Param(ops.uniform(rngs.params(), (w, num_classes), w))  # PyTorch's Linear default
        self.fc_bias = nnx.Param(jnp.zeros((num_classes,), jnp.float32))

    def __call__(self, x, arch, w1x1, train: bool):
        """Logits of one candidate given its generated 1x1 weights [S_pad * N * dc, N_max]."""
        h = jax.nn.relu(ops.conv(x, self.stem[...], padding=3))
        starts = self._row_starts(arch)
        widths = used_channels(self.layout, arch)
        for b in range(BLOCKS):
            h = self._block(b, h, arch, w1x1, starts[b])
            if b < BLOCKS - 1:
                h = jax.nn.relu(self.trans_bn[b](h, widths[b], train))
                h = ops.avg_pool_2x2(jnp.einsum("bhwc,co->bhwo", h, self.trans[b][...]))
        h = jax.nn.relu(self.bn(h, widths[-1], train)).mean((1, 2))
        return h @ self.fc[...] + self.fc_bias[...]

    def _row_starts(self, arch):
        """int32 [3, L]: each layer's first row of the 1x1 weights (its reads' running offset)."""
        lay = self.layout
        span = encoding.slices(lay, arch) * lay.N * lay.dc
        flat = span.reshape(-1)
        return (jnp.cumsum(flat) - flat).reshape(span.shape)

    def _block(self, b, x, arch, w1x1, starts):
        lay = self.layout
        N, width = lay.N, lay.widths[b]
        bs = arch["bank_size"][b]
        bsn = bs * N
        m = jnp.arange(width)
        bank = m // bsn                       # each memory channel's bank (< max_banks: W_b <= max_banks N)
        sub = m % bsn
        n_input = lay.in_channels[b] // bsn
        memory = jnp.zeros((*x.shape[:3], width), x.dtype)
        keep = min(lay.in_channels[b], width)
        memory = memory.at[..., :keep].set(jnp.where(bank[:keep] < n_input, x[..., :keep], 0.0))
        banks = [p[...] if p is not None else None for p in self.banks[b]]
        live = jnp.arange(lay.max_layers) < arch["layers"][b]
        layers = {name: arch[name][b] for name in LAYER_FIELDS}

        def layer(memory, xs):
            lyr, start, on = xs
            read = lyr["read"][bank]                                             # [W_b]
            rank = (jnp.cumsum(lyr["read"]) - 1)[bank]
            units = lyr["G"] * N
            n_b = jnp.minimum(bottleneck(lay, lyr["read"].sum() * bsn, units), lay.N_max)
            rows = jnp.clip(start + rank * bsn + sub, 0, w1x1.shape[0] - 1)
            cols = jnp.arange(lay.N_max) < n_b
            a = jnp.where((read & on)[:, None] & cols[None, :], w1x1[rows], 0.0)
            norm = jnp.sqrt(jnp.sum(a * a))
            a = a / jnp.where(norm > 0, norm, 1.0)
            h = jax.nn.relu(jnp.einsum("bhwc,co->bhwo", memory, a))
            y = self._convs(h, lyr, n_b, units, banks)
            # the j-th written bank gets output slice j mod G / bs
            written = lyr["write"][bank] & on
            j = (jnp.cumsum(lyr["write"]) - 1)[bank]
            source = (j % jnp.maximum(lyr["G"] // bs, 1)) * bsn + sub
            scatter = jnp.where(written[:, None], jax.nn.one_hot(source, lay.N_max, dtype=y.dtype), 0.0)
            return memory + jnp.einsum("bhwo,co->bhwc", y, scatter), None

        slots = lay.layer_slots(b)  # the slots a valid block can fill (the rest are always padding)
        xs = jax.tree.map(lambda v: v[:slots], (layers, starts, live))
        if self.unroll:  # XLA:CPU: conv gradients inside a loop run ~30x slower (BENCHMARKS.md 15)
            for i in range(slots):
                memory, _ = layer(memory, jax.tree.map(lambda v, i=i: v[i], xs))
        else:
            memory, _ = jax.lax.scan(layer, memory, xs)
        return memory

    def _convs(self, h, lyr, n_b, units, banks):
        """The layer's op: conv 0 (with conv 1 after it) plus conv 2 (with conv 3), as its op runs them."""
        lay = self.layout
        active = jnp.asarray(OPTIONS, bool)[lyr["op"]]

        def conv(j, x, c_in):
            k = sliced_kernel(banks[j], lyr["kernel"][j], lyr["dilation"][j], lyr["groups"][j], c_in, units,
                              lay.extent)
            return ops.conv(jax.nn.relu(x), k, padding=lay.extent // 2)

        y = conv(0, h, n_b)
        if banks[1] is not None:
            y = jnp.where(active[1], conv(1, y, units), y)
        if banks[2] is not None:
            z = conv(2, h, n_b)
            if banks[3] is not None:
                z = jnp.where(active[3], conv(3, z, units), z)
            y = y + jnp.where(active[2], z, 0.0)
        return y


class SmashNet(nnx.Module):
    """The HyperNet and the main network: the weight-sharing network SMASH trains (`build_supernet`)."""

    def __init__(self, layout: Layout, num_classes: int, reference_encoding: bool = False, *, rngs: nnx.Rngs):
        self.layout, self.reference_encoding = layout, reference_encoding
        self.hypernet = HyperNet(1 + encoding.channels(layout), layout.N * layout.N * layout.dc, rngs=rngs)
        self.main = MainNet(layout, num_classes, unroll=jax.default_backend() == "cpu", rngs=rngs)

    def weights(self, candidate):
        """The generated 1x1 weights [S_pad * N * dc, N_max] of one candidate (architecture + "z")."""
        lay = self.layout
        c = encoding.encode(lay, candidate, candidate.get("max_kernel"), self.reference_encoding)
        grid = jnp.concatenate([candidate["z"][None], c], 0).transpose(1, 2, 0)   # [k, S_pad, 1 + C_c]
        out = self.hypernet(grid[None], encoding.column_mask(lay, candidate)[None])[0]
        return to_w1x1(out, lay.N, lay.dc)

    def __call__(self, x, arch, train: bool = True, *, forward_only: bool = False):
        candidate = check(arch, (Choice,)).value
        return self.main(x, candidate, self.weights(candidate), train)
