"""Draw and check SMASH architectures: SMASH.py `sample_architecture` as a traceable loop.

The reference draws with the global numpy generator inside a data-dependent while loop; here one
architecture is a `lax.scan` over the `max_layers` slots of each block, a slot drawing a layer while
the block's budget lasts (the reference's loop condition) and staying zeros after. Per layer, in
the reference's order (ajbrock/SMASH SMASH.py sample_architecture):

  - reads: a count, uniform over the multiples of min_reads up to the banks written so far (R),
    clipped to what the remaining budget buys; the banks, a uniform subset of those R;
  - G from {bs, 2 bs, ..., k} with p proportional to 1 / (0.01 + 10 |G - reads x bs|);
  - writes: a count from G/bs to max(R // 2, G/bs) with p proportional to e^-(count - G/bs); the
    banks, a uniform subset of the R written banks and the next G/bs empty ones, new banks taken
    strictly in order;
  - the op configuration; each conv's kernel sides from {3, 5, ..., max_kernel}, its dilation per
    axis uniform in 1 .. 4 - (side - 1) // 2, its groups uniform over the allowed divisors.

Deviations: a block stops at `max_layers` layers (the reference has no bound); bank sizes whose
input fills no bank are not drawn (the reference fails on them); a write count beyond the pool of
banks is clipped to it (the reference fails). The same key gives the same architecture, not the
reference's (its numpy stream cannot be reproduced in JAX); tests compare distributions.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxnas.spaces.smash.layout import (
    BLOCKS,
    CONVS,
    MIN_BUDGET_FRACTION,
    OPTION_PROBS,
    OPTIONS,
    Layout,
    max_dilation,
)

FIELDS = ("bank_size", "layers", "read", "write", "G", "op", "kernel", "dilation", "groups")
LAYER_FIELDS = FIELDS[2:]  # the per-layer arrays, [3, L, ...]


def shapes(layout: Layout) -> dict:
    """{field: (shape, dtype)} of one architecture (`space.SmashSpace`'s docstring lists them)."""
    L, B = layout.max_layers, layout.max_banks
    return {"bank_size": ((BLOCKS,), np.int32), "layers": ((BLOCKS,), np.int32),
            "read": ((BLOCKS, L, B), np.bool_), "write": ((BLOCKS, L, B), np.bool_),
            "G": ((BLOCKS, L), np.int32), "op": ((BLOCKS, L), np.int32),
            "kernel": ((BLOCKS, L, CONVS, 2), np.int32), "dilation": ((BLOCKS, L, CONVS, 2), np.int32),
            "groups": ((BLOCKS, L, CONVS), np.int32)}


def empty(layout: Layout) -> dict:
    """Host arrays of one architecture with no layers (`from_string` fills them)."""
    return {k: np.zeros(shape, dtype) for k, (shape, dtype) in shapes(layout).items()}


def canonicalise(a: dict) -> None:
    """In place: the convs a layer's op leaves inactive get 3x3, dilation 1, 1 group."""
    active = np.asarray(OPTIONS, bool)[a["op"]]  # [..., L, 4]
    live = np.arange(a["G"].shape[-1]) < a["layers"][..., None]  # [..., L]
    on = active & live[..., None]
    idle = ~on & live[..., None]
    a["kernel"][idle] = 3
    a["dilation"][idle] = 1
    a["groups"][idle] = 1


@functools.cache
def tables(layout: Layout):
    """Per block and bank size bs = 1..k ([3, k], index bs - 1): allowed, input banks, banks, min
    budget, min reads."""
    def table(fn, dtype=np.int32):
        return np.array([[fn(b, bs) for bs in range(1, layout.k + 1)] for b in range(BLOCKS)], dtype)
    return (table(lambda b, bs: bs in layout.bank_sizes(b), bool), table(layout.input_banks),
            table(layout.banks), table(lambda b, bs: layout.min_budget(bs)),
            table(lambda b, bs: layout.min_reads(bs)))


def _subset(key, pool, count):
    """A uniform subset of `count` of the True entries of `pool` (bool [B]), as a mask."""
    u = jnp.where(pool, jax.random.uniform(key, pool.shape), 2.0)
    rank = jnp.argsort(jnp.argsort(u))
    return pool & (rank < count)


def _block(layout: Layout, key, block, fraction, bs, max_kernel, base=None, p=1.0):
    """One block's layer arrays and layer count (see the module docstring); `block` and the bank
    size `bs` traced, so the three blocks are one vmapped program.

    With `base` (the block's layer arrays and layer count), each layer of the base is perturbed
    instead: each draw redone with probability `p`, else kept (see `perturb_one`)."""
    L, B, k, dc = layout.max_layers, layout.max_banks, layout.k, layout.dc
    _, nin_t, nbanks_t, minbud_t, minread_t = (jnp.asarray(t)[block, bs - 1] for t in tables(layout))
    nin, nbanks, min_budget, min_reads = nin_t, nbanks_t, minbud_t, minread_t
    channels = jnp.asarray(layout.budget_channels, jnp.float32)[block]
    budget = jnp.floor(fraction * channels / (layout.N * dc)).astype(jnp.int32)
    # the banks the block may use (`written_channels`' length in SMASH.py)
    slots = jnp.minimum(nin + jnp.ceil(fraction * layout.depth * k).astype(jnp.int32) // bs, nbanks)
    max_reads = slots // min_reads * min_reads
    bank = jnp.arange(B)
    g_units = jnp.arange(1, k + 1)
    probs = jnp.asarray(OPTION_PROBS[layout.ops], jnp.float32)
    n_kernels = max_kernel // 2  # len(range(3, max_kernel + 2, 2))
    groups = jnp.asarray(layout.groups, jnp.int32)
    perturb = base is not None
    if not perturb:
        base = {**{k: jnp.zeros(shape[1:], dtype) for k, (shape, dtype) in shapes(layout).items()
                   if k in LAYER_FIELDS}, "layers": L}
    slot_index = jnp.arange(L)

    def layer(carry, xs):
        used, written = carry
        slot_key, i, old = xs
        keys = jax.random.split(slot_key, 16)
        redo = jax.random.uniform(keys[9], (7,)) < p  # reads, G, writes, op, kernels, dilations, groups
        live = (budget - used >= min_budget) & (i < base["layers"])
        R = (written > 0).sum()
        max_in = (budget - used) * dc // bs // min_reads * min_reads
        choices = jnp.minimum(R, max_reads) // min_reads
        n_read = jnp.minimum(min_reads * (1 + jax.random.randint(keys[0], (), 0, jnp.maximum(choices, 1))),
                             max_in)
        read = _subset(keys[1], bank < R, n_read)
        # kept reads must still be written and (a deviation) within the remaining budget
        keep = ~redo[0] & ~(old["read"] & (written == 0)).any() & (old["read"].sum() <= max_in)
        read = jnp.where(keep, old["read"], read)
        n_read = read.sum()
        distance = jnp.abs(g_units - n_read * bs).astype(jnp.float32)
        G = 1 + jax.random.categorical(keys[2], jnp.where(g_units % bs == 0, -jnp.log(0.01 + 10.0 * distance),
                                                          -jnp.inf))
        G = jnp.where(redo[1], G, old["G"])
        a = G // bs
        top = jnp.maximum(R // 2, a)
        n_w = a + jax.random.categorical(keys[3], jnp.where(jnp.arange(B + 1) <= top - a,
                                                            -jnp.arange(B + 1, dtype=jnp.float32), -jnp.inf))
        pool = (bank < R) | ((bank >= R) & (bank < jnp.minimum(R + a, slots)))
        picked = _subset(keys[4], pool, jnp.minimum(n_w, pool.sum()))
        # a kept write into a bank that is now empty moves to the lowest empty banks (perturb_arch.py)
        picked = jnp.where(redo[2], picked, old["write"])
        fresh = (picked & (written == 0)).sum()
        write = (picked & (written > 0)) | ((bank >= R) & (bank < jnp.minimum(R + fresh, nbanks)))
        op = jnp.where(redo[3], jax.random.categorical(keys[5], jnp.log(probs)), old["op"])
        kernel = jnp.where(redo[4], 3 + 2 * jax.random.randint(keys[6], (CONVS, 2), 0, n_kernels),
                           old["kernel"])
        dilation = 1 + jax.random.randint(keys[7], (CONVS, 2), 0, max_dilation(kernel))
        # a kept dilation too large for a redrawn kernel is redrawn (perturb_arch.py keeps it: a deviation)
        dilation = jnp.where(~redo[5] & (old["dilation"] <= max_dilation(kernel)) & (old["dilation"] > 0),
                             old["dilation"], dilation)
        group = jnp.where(redo[6], groups[jax.random.randint(keys[8], (CONVS,), 0, len(layout.groups))],
                          old["groups"])
        active = jnp.asarray(OPTIONS, bool)[op]
        out = {"read": read & live, "write": write & live, "G": jnp.where(live, G, 0),
               "op": jnp.where(live, op, 0),
               "kernel": jnp.where(live, jnp.where(active[:, None], kernel, 3), 0),
               "dilation": jnp.where(live, jnp.where(active[:, None], dilation, 1), 0),
               "groups": jnp.where(live, jnp.where(active, group, 1), 0), "live": live}
        carry = (jnp.where(live, used + n_read * bs // dc, used), written + (write & live).astype(jnp.int32))
        return carry, out

    written0 = (bank < nin).astype(jnp.int32)
    old = {name: v for name, v in base.items() if name != "layers"}
    _, out = jax.lax.scan(layer, (jnp.int32(0), written0), (jax.random.split(key, L), slot_index, old))
    live = out.pop("live")
    return out, live.sum().astype(jnp.int32)


def sample_one(layout: Layout, key, state) -> dict:
    """One architecture (see the module docstring); `state` bounds the budget and the kernels."""
    k_budget, k_size, k_blocks = jax.random.split(key, 3)
    fractions = jax.random.uniform(k_budget, (BLOCKS,), jnp.float32, MIN_BUDGET_FRACTION,
                                   state["max_budget"])
    allowed = jnp.asarray(tables(layout)[0])
    sizes = 1 + jax.random.categorical(k_size, jnp.where(allowed, 0.0, -jnp.inf))  # [3]
    blocks, counts = jax.vmap(lambda kb, b, f, bs: _block(layout, kb, b, f, bs, state["max_kernel"]))(
        jax.random.split(k_blocks, BLOCKS), jnp.arange(BLOCKS), fractions, sizes)
    return _assemble(sizes, counts, blocks)


def _assemble(sizes, counts, blocks) -> dict:
    return {"bank_size": sizes.astype(jnp.int32), "layers": counts,
            **{k: v.astype(jnp.bool_ if k in ("read", "write") else jnp.int32) for k, v in blocks.items()}}


def perturb_one(layout: Layout, key, arch, p: float = 0.05) -> dict:
    """A perturbation of one architecture (ajbrock/SMASH perturb_arch.py, the selection's
    "perturb" and "Markov" steps): bank sizes kept; layer by layer, each of the reads, G, writes,
    op, kernels, dilations and groups redrawn with probability p by the sampler's rule, against the
    block's full budget; reads of a bank no longer written are redrawn, writes into a bank now
    empty move to the lowest empty banks. Deviations that keep every result valid: kept reads over
    the remaining budget are redrawn, as is a kept dilation too large for a redrawn kernel, and the
    layers that no longer fit the budget are dropped (the reference keeps them unchecked)."""
    blocks, counts = jax.vmap(
        lambda kb, b, bs, base: _block(layout, kb, b, jnp.float32(1.0), bs, layout.max_kernel, base, p))(
        jax.random.split(key, BLOCKS), jnp.arange(BLOCKS), arch["bank_size"],
        {**{name: arch[name] for name in LAYER_FIELDS}, "layers": arch["layers"]})
    return _assemble(arch["bank_size"], counts, blocks)


def check_one(layout: Layout, a: dict) -> None:
    """ValueError naming the first rule one host architecture breaks (the sampler's rules that the
    network relies on)."""
    L = layout.max_layers
    for b in range(BLOCKS):
        bs, n = int(a["bank_size"][b]), int(a["layers"][b])
        where = f"block {b}"
        if bs not in layout.bank_sizes(b):
            raise ValueError(f"{where}: bank size {bs} is not one of {list(layout.bank_sizes(b))}")
        if not 0 <= n <= L:
            raise ValueError(f"{where}: {n} layers, outside 0..{L} (smash.max_layers)")
        nbanks, min_reads = layout.banks(b, bs), layout.min_reads(bs)
        written = np.arange(layout.max_banks) < layout.input_banks(b, bs)
        spent = 0
        for i in range(L):
            at = f"{where}, layer {i}"
            read, write = a["read"][b, i], a["write"][b, i]
            if i >= n:
                if read.any() or write.any() or a["G"][b, i] or a["op"][b, i] or a["kernel"][b, i].any() \
                        or a["dilation"][b, i].any() or a["groups"][b, i].any():
                    raise ValueError(f"{at}: beyond the block's {n} layers, every entry must be 0")
                continue
            n_read = int(read.sum())
            if n_read == 0 or n_read % min_reads:
                raise ValueError(f"{at}: reads {n_read} banks, not a positive multiple of {min_reads}")
            if (read & ~written).any():
                first = int(np.flatnonzero(read & ~written)[0])
                raise ValueError(f"{at}: reads bank {first}, which no earlier layer or the block input wrote")
            G = int(a["G"][b, i])
            if not (bs <= G <= layout.k and G % bs == 0):
                raise ValueError(f"{at}: G={G} is not a multiple of the bank size {bs} up to {layout.k}")
            if not write.any():
                raise ValueError(f"{at}: writes no bank")
            if np.flatnonzero(write).max() >= nbanks:
                raise ValueError(f"{at}: writes bank {int(np.flatnonzero(write).max())}, beyond the block's "
                                 f"{nbanks} banks")
            written = written | write
            if (np.flatnonzero(written) != np.arange(written.sum())).any():
                raise ValueError(f"{at}: skips an empty bank (new banks are written in order)")
            op = int(a["op"][b, i])
            if not 0 <= op < len(OPTIONS):
                raise ValueError(f"{at}: op {op} is not one of 0..{len(OPTIONS) - 1}")
            for j in range(CONVS):
                kh, kw = (int(x) for x in a["kernel"][b, i, j])
                dh, dw = (int(x) for x in a["dilation"][b, i, j])
                g = int(a["groups"][b, i, j])
                if not OPTIONS[op][j]:
                    if (kh, kw, dh, dw, g) != (3, 3, 1, 1, 1):
                        raise ValueError(f"{at}: inactive conv {j} must be k3x3d1x1g1")
                    continue
                if kh not in layout.kernels or kw not in layout.kernels:
                    raise ValueError(f"{at}: kernel {kh}x{kw} outside {list(layout.kernels)} "
                                     "(smash.max_kernel)")
                if not (1 <= dh <= max_dilation(kh) and 1 <= dw <= max_dilation(kw)):
                    raise ValueError(f"{at}: dilation {dh}x{dw} too large for kernel {kh}x{kw} "
                                     "(at most 4 - (side - 1) // 2)")
                if g not in layout.groups:
                    raise ValueError(f"{at}: groups {g} not one of {list(layout.groups)}")
            spent += n_read * bs // layout.dc
        if spent > layout.budget_slices[b]:
            raise ValueError(f"{where}: reads spend {spent} slices, over the block's budget of "
                             f"{layout.budget_slices[b]}")
