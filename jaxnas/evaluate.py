"""Candidate evaluation: loss and accuracy of K architectures on one batch, with shared weights.

One jitted call evaluates all K candidates: `jax.lax.map(..., batch_size=chunk_size)` vmaps chunks
of candidates, so activation memory grows with `chunk_size`, not with K. `evaluate_blocks` (an
`Evaluator` with a `block_size`) dispatches them from Python in blocks of whole chunks instead, with
bit-identical results: a progress bar, and Ctrl-C acting between blocks, not after one long call.

BatchNorm during evaluation (`bn`):
  - "running": the supernet's shared running statistics (PyTorch eval mode);
  - "batch":   statistics of the evaluation batch itself (PyTorch eval mode when the search cells
               do not track running statistics, as in SETN's reference runs);
  - "recal":   per-candidate statistics recomputed on a few training batches first (`recal_images`),
               the cumulative average of their batch statistics, then used in eval mode.
"""
from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from jaxnas import cpu_kernels
from jaxnas.nn import functional
from jaxnas.nn.functional import loss_and_accuracy
from jaxnas.nn.ops import BN_MOMENTUM
from jaxnas.spaces.arch import check

BN_MODES = ("running", "batch", "recal")


def map_chunked(fn, xs, chunk_size: int):
    """lax.map over candidates, `chunk_size` of them vmapped at a time.

    chunk_size 1 is a plain sequential map, not a vmap of width 1: under vmap a traced lax.switch
    becomes a select that computes every branch, which made the `switch` formulation run all
    five ops (measured 3.5 s instead of 1.1 s per NASWOT candidate at C=16, N=5).
    """
    if chunk_size == 1:
        return jax.lax.map(fn, xs)
    return jax.lax.map(fn, xs, batch_size=chunk_size)


def recalibrate(graphdef, params, stats, arch, recal_images):
    """Per-candidate BN statistics: the average over batches of each batch's statistics.

    The forward is forward-only (`forward_only=True`), so the network may prune ops whose output
    nothing uses: their BatchNorms keep zero statistics, which only forwards that prune the same
    way (as `evaluate`'s) never read.

    A training-mode forward from zero running statistics returns BN_MOMENTUM * (batch statistic)
    for every BN layer, since training mode normalises with batch statistics only; dividing by
    BN_MOMENTUM recovers the batch statistics exactly.
    """
    zeros = jax.tree.map(jnp.zeros_like, stats)

    def one(images):
        _, new = functional.apply(graphdef, params, zeros, images, arch, train=True, forward_only=True)
        return jax.tree.map(lambda s: s / BN_MOMENTUM, new)

    per_batch = jax.lax.map(one, recal_images)
    return jax.tree.map(lambda s: s.mean(0), per_batch)


# YNNPACK for its convolutions and matmuls (cpu_kernels): 15-20% faster forward passes on CPU; and
# for reductions (BatchNorm statistics): ~12 % more on SETN's selection (BENCHMARKS.md section 6)
@cpu_kernels.jit(static_argnames=("graphdef", "bn", "chunk_size"),
                 fusions=(cpu_kernels.DOT, cpu_kernels.REDUCE))
def _evaluate(graphdef, params, stats, archs, images, labels, recal_images, *, bn, chunk_size):
    def one(arch):
        s = stats
        if bn == "recal":
            s = recalibrate(graphdef, params, stats, arch, recal_images)
        logits, _ = functional.apply(graphdef, params, s, images, arch, train=(bn == "batch"),
                                     forward_only=True)
        return loss_and_accuracy(logits, labels)

    loss, acc = map_chunked(one, archs, chunk_size)
    return {"loss": loss, "acc": acc}


def _check(archs, bn, chunk_size, recal_images):
    if bn not in BN_MODES:
        raise ValueError(f"bn must be one of {BN_MODES}, got {bn!r}")
    if bn == "recal" and recal_images is None:
        raise ValueError("bn='recal' needs recal_images: [R, B, H, W, 3] training batches")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    check(archs)
    if min(x.ndim for x in jax.tree.leaves(archs.value)) < 1:
        raise ValueError("archs must carry a leading candidate axis")


def evaluate(graphdef, params, stats, archs, images, labels, *, bn: str = "running", chunk_size: int = 16,
             recal_images=None):
    """Loss and accuracy of each of the K candidates `archs` on one batch.

    archs: a container batch (`jaxnas.spaces.arch`: e.g. `Choice(int32[K, 6])` or
    `Weights(float[K, 6, 5])`). The pass is forward-only: the network picks its fastest exact
    formulation (NB201: only the chosen op runs, cells scanned, unused ops pruned).
    images: float32 [B, H, W, 3] (normalised); labels: int32 [B]; recal_images: [R, B', H, W, 3]
    training batches for bn="recal". Returns {"loss": float32[K], "acc": float32[K]}.
    """
    _check(archs, bn, chunk_size, recal_images)
    return _evaluate(graphdef, params, stats, archs, images, labels, recal_images, bn=bn,
                     chunk_size=min(chunk_size, archs.batch_size))


def block_plan(k: int, chunk_size: int, block_size: int):
    """How `evaluate_blocks` splits K candidates: (blocks, remainder), or None for one call.

    One call scans the K // c whole chunks of c = min(chunk_size, K) candidates (the scan's body
    vmaps a chunk), then vmaps the K % c left over. The blocks split the whole chunks: `blocks`
    int[n, m * c] candidate indices, m >= 2 whole chunks per block (a one-step scan compiles
    differently: not bit-identical for c = 2 on XLA:CPU), of about `block_size` candidates and
    equal in size, the last padded with copies of the last whole-chunk candidate, so one program
    serves them all; `remainder` int[K % c] (maybe empty) is vmapped by a call of its own, as one
    call vmaps it. Every candidate goes through the computation one call gives it, so the results
    are bit-identical. None when the whole chunks fit in one block: one call.
    """
    c = min(chunk_size, k)
    chunks = k // c
    per = max(2, -(-block_size // c))
    if chunks <= per:
        return None
    n = -(-chunks // per)
    per = -(-chunks // n)
    blocks = np.minimum(np.arange(n * per * c), chunks * c - 1).reshape(n, per * c)
    return blocks, np.arange(chunks * c, k)


def evaluate_blocks(graphdef, params, stats, archs, images, labels, *, bn: str = "running",
                    chunk_size: int = 16, recal_images=None, block_size: int = 16, bar=None):
    """`evaluate`, bit for bit, dispatched from Python in blocks of about `block_size` candidates
    (`block_plan`), each waited for before the next is dispatched, so that a KeyboardInterrupt
    (Ctrl-C; the CLI turns SIGTERM into one) acts between blocks. `bar` (tqdm-like, optional)
    advances by each block's candidates."""
    _check(archs, bn, chunk_size, recal_images)
    k = archs.batch_size
    plan = block_plan(k, chunk_size, block_size)
    if plan is None:
        out = jax.block_until_ready(evaluate(graphdef, params, stats, archs, images, labels, bn=bn,
                                             chunk_size=chunk_size, recal_images=recal_images))
        if bar is not None:
            bar.update(k)
        return out
    blocks, remainder = plan
    host = jax.tree.map(np.asarray, archs)
    per, whole = blocks.shape[1], k - len(remainder)  # candidates per block; in whole chunks
    pieces = [(idx, min(per, whole - i * per)) for i, idx in enumerate(blocks)]  # (indices, less the padding)
    pieces += [(remainder, len(remainder))] if len(remainder) else []
    parts = []
    for idx, n in pieces:
        out = jax.device_get(_evaluate(graphdef, params, stats, jax.tree.map(lambda v, idx=idx: v[idx], host),
                                       images, labels, recal_images, bn=bn, chunk_size=min(chunk_size, k)))
        parts.append({key: v[:n] for key, v in out.items()})
        if bar is not None:
            bar.update(n)
    return {key: jnp.asarray(np.concatenate([p[key] for p in parts])) for key in parts[0]}


@dataclasses.dataclass
class Evaluator:
    """Candidate evaluation as methods receive it: a fixed (normalised) validation batch, the
    recalibration batches for bn="recal", the BN mode and the chunk size. Calling it evaluates K
    candidates (a container batch) with given weights: {"loss": float32[K], "acc": float32[K]},
    plus, with `cost` (a space's traceable cost of one plain architecture, e.g.
    `functools.partial(space.cost, C=.., N=..)`), each of its entries per candidate, so a method
    can rank on accuracy and cost together.

    With `block_size` (`in_blocks`), the candidates go in blocks dispatched from Python
    (`evaluate_blocks`: bit-identical), with a progress bar named `desc` when `progress` (off
    unless the caller sets it: SearchRun, to its own `progress`)."""
    images: Any
    labels: Any
    recal_images: Any = None
    bn: str = "batch"
    chunk_size: int = 1
    cost: Callable | None = None
    block_size: int = 0       # candidates per block dispatched from Python; 0: one call
    progress: bool = False    # a progress bar over the blocks
    desc: str = "candidates"  # the bar's label

    def in_blocks(self, desc: str, block_size: int) -> Evaluator:
        """This evaluator, evaluating in blocks of about `block_size` candidates under a bar `desc`."""
        return dataclasses.replace(self, block_size=block_size, desc=desc)

    def __call__(self, graphdef, params, stats, archs) -> dict:
        args = (graphdef, params, stats, archs, self.images, self.labels)
        kw = {"bn": self.bn, "chunk_size": self.chunk_size, "recal_images": self.recal_images}
        if self.block_size:
            check(archs)
            with tqdm(total=archs.batch_size, desc=self.desc, unit="cand", dynamic_ncols=True,
                      disable=not self.progress) as bar:
                out = evaluate_blocks(*args, **kw, block_size=self.block_size, bar=bar)
        else:
            out = evaluate(*args, **kw)
        if self.cost is not None:
            out.update(_costs(self.cost, archs.value))
        return out


@functools.partial(jax.jit, static_argnums=0)
def _costs(cost, archs):
    return jax.vmap(cost)(archs)
