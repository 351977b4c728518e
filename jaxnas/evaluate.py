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
from typing import Any

import jax
import jax.numpy as jnp

from jaxnas import cpu_kernels
from jaxnas.nn import functional
from jaxnas.nn.functional import loss_and_accuracy
from jaxnas.nn.ops import BN_MOMENTUM

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


def _impl_kw(mode, impl, prune=False):
    """Forward-only keyword arguments: cells scanned (fast forward, never differentiated here) and,
    with `prune` in single mode, ops whose output nothing uses skipped (NB201SuperNet)."""
    kw = {"scan_cells": True, "prune": prune if mode == "single" else False}
    return {**kw, "single_path_impl": impl} if impl and mode == "single" else kw


def recalibrate(graphdef, params, stats, arch, recal_images, mode="single", impl=None, prune=False):
    """Per-candidate BN statistics: the average over batches of each batch's statistics.

    With `prune` the BatchNorms of ops whose output nothing uses keep zero statistics: only for
    forwards that prune the same way (as `evaluate` does).

    A training-mode forward from zero running statistics returns BN_MOMENTUM * (batch statistic)
    for every BN layer, since training mode normalises with batch statistics only; dividing by
    BN_MOMENTUM recovers the batch statistics exactly.
    """
    zeros = jax.tree.map(jnp.zeros_like, stats)

    def one(images):
        _, new = functional.apply(graphdef, params, zeros, images, arch, mode=mode, train=True,
                                **_impl_kw(mode, impl, prune))
        return jax.tree.map(lambda s: s / BN_MOMENTUM, new)

    per_batch = jax.lax.map(one, recal_images)
    return jax.tree.map(lambda s: s.mean(0), per_batch)


def _forward_prune(params, bn):
    """How far `evaluate`'s forward may prune (NB201SuperNet `prune`): ops whose output nothing uses
    always; with batch statistics and search cells without BN bias (SETN's affine=False) also the
    convs of all-zero nodes, whose BatchNorm then outputs exact zeros."""
    paths = jax.tree_util.tree_flatten_with_path(params)[0]
    cell_bias = any(any(getattr(k, "key", None) == "edges" for k in p) and getattr(p[-1], "key", None) == "bias"
                    for p, _ in paths)
    return "zero" if bn == "batch" and not cell_bias else True


# YNNPACK for its convolutions and matmuls (cpu_kernels): 15-20% faster forward passes on CPU; and
# for reductions (BatchNorm statistics): ~12 % more on SETN's selection (BENCHMARKS.md section 6)
@cpu_kernels.jit(static_argnames=("graphdef", "mode", "bn", "chunk_size", "impl"),
                 fusions=(cpu_kernels.DOT, cpu_kernels.REDUCE))
def _evaluate(graphdef, params, stats, archs, images, labels, recal_images, *, mode, bn, chunk_size, impl):
    def one(arch):
        s = stats
        if bn == "recal":
            s = recalibrate(graphdef, params, stats, arch, recal_images, mode, impl, prune=True)
        logits, _ = functional.apply(graphdef, params, s, images, arch, mode=mode, train=(bn == "batch"),
                                     **_impl_kw(mode, impl, prune=_forward_prune(params, bn)))
        return loss_and_accuracy(logits, labels)

    loss, acc = map_chunked(one, archs, chunk_size)
    return {"loss": loss, "acc": acc}


def evaluate(graphdef, params, stats, archs, images, labels, *, mode: str = "single",
             bn: str = "running", chunk_size: int = 16, recal_images=None, impl=None):
    """Loss and accuracy of each of the K candidates `archs` ([K, 6] or [K, 6, 5]) on one batch.

    `impl` overrides the supernet's single-path formulation for this forward-only pass (jaxnas's
    methods pass `switch`: it runs only the chosen op, the fastest exact choice without gradients).

    images: float32 [B, H, W, 3] (normalised); labels: int32 [B]; recal_images: [R, B', H, W, 3]
    training batches for bn="recal". Returns {"loss": float32[K], "acc": float32[K]}.
    """
    if bn not in BN_MODES:
        raise ValueError(f"bn must be one of {BN_MODES}, got {bn!r}")
    if bn == "recal" and recal_images is None:
        raise ValueError("bn='recal' needs recal_images: [R, B, H, W, 3] training batches")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    archs = jnp.asarray(archs)
    if archs.ndim < 2:
        raise ValueError(f"archs must carry a leading candidate axis, got shape {archs.shape}")
    return _evaluate(graphdef, params, stats, archs, images, labels, recal_images,
                     mode=mode, bn=bn, chunk_size=min(chunk_size, archs.shape[0]), impl=impl)


@dataclasses.dataclass
class Evaluator:
    """Candidate evaluation as methods receive it: a fixed (normalised) validation batch, the
    recalibration batches for bn="recal", the BN mode, the chunk size and the forward-only
    formulation (`jaxnas.backend.resolve_impl(..., forward_only=True)`). Calling it evaluates
    K candidates with given weights: {"loss": float32[K], "acc": float32[K]}."""
    images: Any
    labels: Any
    recal_images: Any = None
    bn: str = "batch"
    chunk_size: int = 1
    impl: Any = None

    def __call__(self, graphdef, params, stats, archs, mode: str = "single") -> dict:
        return evaluate(graphdef, params, stats, archs, self.images, self.labels, mode=mode, bn=self.bn,
                        chunk_size=self.chunk_size, recal_images=self.recal_images, impl=self.impl)
