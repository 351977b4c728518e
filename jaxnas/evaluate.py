"""Candidate evaluation: loss and accuracy of K architectures on one batch, with shared weights.

One jitted call evaluates all K candidates: `jax.lax.map(..., batch_size=chunk_size)` vmaps chunks
of candidates, so activation memory grows with `chunk_size`, not with K.

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
@cpu_kernels.jit(static_argnames=("graphdef", "bn", "chunk_size"), fusions=(cpu_kernels.DOT, cpu_kernels.REDUCE))
def _evaluate(graphdef, params, stats, archs, images, labels, recal_images, *, bn, chunk_size):
    def one(arch):
        s = stats
        if bn == "recal":
            s = recalibrate(graphdef, params, stats, arch, recal_images)
        logits, _ = functional.apply(graphdef, params, s, images, arch, train=(bn == "batch"), forward_only=True)
        return loss_and_accuracy(logits, labels)

    loss, acc = map_chunked(one, archs, chunk_size)
    return {"loss": loss, "acc": acc}


def evaluate(graphdef, params, stats, archs, images, labels, *, bn: str = "running", chunk_size: int = 16,
             recal_images=None):
    """Loss and accuracy of each of the K candidates `archs` on one batch.

    archs: a container batch (`jaxnas.spaces.arch`: e.g. `Choice(int32[K, 6])` or
    `Weights(float[K, 6, 5])`). The pass is forward-only: the network picks its fastest exact
    formulation (NB201: only the chosen op runs, cells scanned, unused ops pruned).
    images: float32 [B, H, W, 3] (normalised); labels: int32 [B]; recal_images: [R, B', H, W, 3]
    training batches for bn="recal". Returns {"loss": float32[K], "acc": float32[K]}.
    """
    if bn not in BN_MODES:
        raise ValueError(f"bn must be one of {BN_MODES}, got {bn!r}")
    if bn == "recal" and recal_images is None:
        raise ValueError("bn='recal' needs recal_images: [R, B, H, W, 3] training batches")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    check(archs)
    if min(x.ndim for x in jax.tree.leaves(archs.value)) < 1:
        raise ValueError("archs must carry a leading candidate axis")
    return _evaluate(graphdef, params, stats, archs, images, labels, recal_images, bn=bn,
                     chunk_size=min(chunk_size, archs.batch_size))


@dataclasses.dataclass
class Evaluator:
    """Candidate evaluation as methods receive it: a fixed (normalised) validation batch, the
    recalibration batches for bn="recal", the BN mode and the chunk size. Calling it evaluates K
    candidates (a container batch) with given weights: {"loss": float32[K], "acc": float32[K]},
    plus, with `cost` (a space's traceable cost of one plain architecture, e.g.
    `functools.partial(space.cost, C=.., N=..)`), each of its entries per candidate, so a method
    can rank on accuracy and cost together."""
    images: Any
    labels: Any
    recal_images: Any = None
    bn: str = "batch"
    chunk_size: int = 1
    cost: Callable | None = None

    def __call__(self, graphdef, params, stats, archs) -> dict:
        out = evaluate(graphdef, params, stats, archs, self.images, self.labels, bn=self.bn,
                       chunk_size=self.chunk_size, recal_images=self.recal_images)
        if self.cost is not None:
            out.update(_costs(self.cost, archs.value))
        return out


@functools.partial(jax.jit, static_argnums=0)
def _costs(cost, archs):
    return jax.vmap(cost)(archs)
