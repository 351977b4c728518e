"""The SMASH encoding: the tensor c a HyperNet reads to generate an architecture's 1x1 weights.

Follows ajbrock/SMASH SMASH.py `sample_weights`: c is [C_c, k, S] with k = N_max / N rows and one
column per slice (N * depth_compression consumed 1x1 input rows) of every layer, in the order the
network consumes them. A layer's columns carry, on its first G rows, +1 at: the read bank(s) whose
channels that column covers, every bank the layer writes, its block, its G, its dilations, its
kernel sides and its groups (one field per active conv when layers have several); everything else
is -1. The HyperNet's input is [z, c] (z ~ N(0, I), one row of k x S) cut after the last used
column plus one (the reference's S' = slices + 1); here every array keeps S_pad columns and
`column_mask` says which are in use, so one program serves every architecture.

Two reference quirks (seed-methods.md SMASH-4, 1 and 2) are fixed by default, kept with
`smash.encoding="reference"`: the kernel fields are `max_kernel // 2` wide at every step (the
reference sizes them by the *annealed* kernel bound, so during the first 3/8 of training the
groups field sits at other channels than at evaluation), and the groups one-hot is at
`factors.index(g)` (the reference writes it one channel early, onto the last kernel channel).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from jaxnas.spaces.smash.layout import BLOCKS, CONVS, OPTIONS, Layout
from jaxnas.spaces.smash.sampler import LAYER_FIELDS

MAX_DILATE = 3  # dilation fields' width: the sampler's bound 4 - (k - 1) // 2 is at most 3


def multi_conv(layout: Layout) -> bool:
    """Whether layers may have several convs (the reference's var_op / big_op encoding branch)."""
    return layout.ops != "single"


def channels(layout: Layout) -> int:
    """C_c: read banks, write banks, block, G, then per conv dilation, kernel, (op), groups."""
    convs = CONVS if multi_conv(layout) else 1
    per_conv = 2 * MAX_DILATE + 2 * (layout.max_kernel // 2) + len(layout.groups)
    return 2 * layout.max_banks + BLOCKS + layout.k + convs * per_conv + (4 if layout.ops == "var" else 0)


def grid_columns(layout: Layout) -> int:
    """S_pad: every slice of every block's full budget, plus the reference's one spare column."""
    return sum(layout.budget_slices) + 1


def slices(layout: Layout, arch) -> jax.Array:
    """int32 [3, L]: the columns each layer's reads take (len(read) x bs / depth_compression)."""
    return (arch["read"].sum(-1) * arch["bank_size"][:, None] // layout.dc).astype(jnp.int32)


def column_mask(layout: Layout, arch) -> jax.Array:
    """bool [S_pad]: the columns the HyperNet sees (the used ones and one more, as in the reference)."""
    return jnp.arange(grid_columns(layout)) <= slices(layout, arch).sum()


def encode(layout: Layout, arch, max_kernel=None, reference: bool = False) -> jax.Array:
    """float32 [C_c, k, S_pad] of one architecture (traceable; vmap for a batch). `max_kernel` is
    the annealed kernel bound, read only with `reference` (the field width drift)."""
    L, B, k = layout.max_layers, layout.max_banks, layout.k
    S = grid_columns(layout)
    bs = arch["bank_size"]
    span = slices(layout, arch).reshape(-1)                            # [3L], layers in order
    end = jnp.cumsum(span)
    start = end - span
    col = jnp.arange(S)
    owner = jnp.clip(jnp.searchsorted(end, col, side="right"), 0, BLOCKS * L - 1)  # [S]
    used = col < end[-1]
    block = owner // L
    flat = {name: arch[name].reshape(BLOCKS * L, *arch[name].shape[2:]) for name in LAYER_FIELDS}
    # read bits: the rank-th read bank of the owner covers offsets [rank bs // dc, ceil((rank + 1) bs / dc))
    read = flat["read"][owner]                                           # [S, B]
    rank = jnp.cumsum(read, -1) - 1
    offset = (col - start[owner])[:, None]
    b_s = bs[block][:, None]
    sub = rank * b_s
    lo = sub // layout.dc
    hi = (sub + b_s) // layout.dc + (sub + b_s) % layout.dc  # the reference's end (a ceiling at dc = 2)
    fields = [read & (offset >= lo) & (offset < hi), flat["write"][owner],
              jax.nn.one_hot(block, BLOCKS, dtype=jnp.bool_),
              jax.nn.one_hot(flat["G"][owner] - 1, k, dtype=jnp.bool_)]
    width = layout.max_kernel // 2
    if reference:  # the annealed bound's width (SMASH.py: `self.max_kernel // 2`); C_c stays the final's
        width = jnp.asarray(layout.max_kernel if max_kernel is None else max_kernel) // 2
    active = jnp.asarray(OPTIONS, bool)[flat["op"][owner]]               # [S, 4]
    convs = list(range(CONVS)) if multi_conv(layout) else [0]
    g_index = jnp.argmax(flat["groups"][owner][..., None] == jnp.asarray(layout.groups), -1)  # [S, 4]
    # the fields after G, in the reference's order: every conv's dilation (h, w), every conv's kernel
    # (h, w), the op field (var_op; the reference writes -1 there, no information), every conv's
    # groups; only active convs set theirs. Positions are channels after G (traced with `reference`).
    marks, at = [], 0
    for j in convs:
        for axis in (0, 1):
            marks.append((at + flat["dilation"][owner, j, axis] - 1, active[:, j]))
            at += MAX_DILATE
    for j in convs:
        for axis in (0, 1):
            marks.append((at + flat["kernel"][owner, j, axis] // 2 - 1, active[:, j]))
            at = at + width
    if layout.ops == "var":
        at = at + 4
    for j in convs:
        marks.append((at + g_index[:, j] - (1 if reference else 0), active[:, j]))
        at = at + len(layout.groups)
    tail_width = channels(layout) - 2 * B - BLOCKS - k
    slot = jnp.arange(tail_width)
    tail = [functools.reduce(jnp.logical_or, [(slot == pos[:, None]) & on[:, None] for pos, on in marks])]
    on = jnp.concatenate(fields + tail, -1) & used[:, None]              # [S, C_c]
    rows = jnp.arange(k)[:, None] < flat["G"][owner][None, :]            # [k, S]
    c = jnp.where(on.T[:, None, :] & rows[None], 1.0, -1.0)
    return c.astype(jnp.float32)
