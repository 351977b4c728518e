"""ABS angle metric of NB201 architectures (Hu et al., "Angle-based Search Space Shrinking for NAS",
ECCV 2020), vectorised over architectures.

Follows megvii-model/AngleNAS, NAS-Bench-201/exps/angle/weight_angle.py (`get_arch_angle`): the
angle of architecture a is arccos(cos(theta0_a, thetaT_a)) between the supernet's initial weights
theta0 and its current weights thetaT, where theta_a concatenates
  - fixed part (`get_head_vector`, `get_tail_vector`, `get_fixed_cell_vector`): stem conv kernel and
    BN scale/bias; head BN scale/bias and classifier kernel/bias; for each ResNet reduction block
    conv_a kernel + BN scale/bias, conv_b kernel + BN scale/bias and the shortcut 1x1 conv kernel
    (the reference's `downsample.1.weight`). These are exactly jaxnas's parameters outside the
    search cells; kernel layouts (HWIO, [in, out]) differ from PyTorch's but inner products do not.
  - for every search cell and each input->output path [0,3], [0,2,3], [0,1,2,3], [0,1,3], the ops
    on the path's edges: a path with a `none` edge is dropped whole, skip_connect adds nothing,
    avg_pool_3x3 adds a constant 1/9 tensor of shape (C_out, 3, 3) (the same in both vectors), and
    nor_conv_1x1 / nor_conv_3x3 add their conv kernel. An edge on several paths counts several times.
    Search-cell BNs are affine=False in the reference; a supernet built with affine=True has cell
    BN scale/bias, which are left out here, as the reference has none.
An architecture whose 4 paths are all dropped keeps the fixed part, so its angle is defined.

The inner product and both squared norms of a concatenation are sums over its blocks, so
`angle_blocks` computes (<w0, wT>, |w0|^2, |wT|^2) once per fixed leaf and per (cell, edge, op), and
`angles` combines them per architecture: all 15,625 architectures take milliseconds, where the
reference loops in Python for minutes. The reference's `cell_index_list` is hard-coded for N=5;
here any N works.
"""
from __future__ import annotations

import itertools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxnas.spaces.nb201.cell import CONV1, CONV3, EDGES, NONE, NUM_EDGES, NUM_OPS, POOL

PATHS = ((0, 3), (0, 2, 3), (0, 1, 2, 3), (0, 1, 3))  # node sequences, the reference's order
# PATH_EDGES[p, e]: how many times edge e lies on path p (0 or 1)
PATH_EDGES = np.zeros((len(PATHS), NUM_EDGES), np.int32)
for _p, _nodes in enumerate(PATHS):
    for _j, _i in itertools.pairwise(_nodes):
        PATH_EDGES[_p, EDGES.index((_i, _j))] += 1


class AngleBlocks(NamedTuple):
    """Additive pieces of the angle; the last axis is (<theta0, thetaT>, |theta0|^2, |thetaT|^2).

    fixed: [3], stem, head and reduction blocks summed. cells: [S, 6, 5, 3] per search cell (in
    network order), edge and op; zero for none and skip_connect, C_out/9 for avg_pool_3x3."""
    fixed: jax.Array
    cells: jax.Array


def _terms(w0, w):
    return jnp.stack([jnp.sum(w0 * w), jnp.sum(w0 * w0), jnp.sum(w * w)])


def _keys(path):
    return tuple(getattr(k, "key", getattr(k, "idx", k)) for k in path)


@jax.jit
def angle_blocks(params0, params) -> AngleBlocks:
    """The blocks of the NB201 supernet's params (`jaxnas.nn.split`), initial `params0` and
    current `params`, of the same structure and dtype (float32 or float64). Jitted: one compile
    per supernet shape instead of one per eager op."""
    flat0, tree0 = jax.tree_util.tree_flatten_with_path(params0)
    flat, tree = jax.tree_util.tree_flatten(params)
    if tree != tree0:
        raise ValueError("params0 and params must have the same tree structure")
    fixed, convs, c_out = [], {}, {}
    for (path, w0), w in zip(flat0, flat):
        keys = _keys(path)
        if "edges" not in keys:  # stem, head, ResNet reduction blocks
            fixed.append(_terms(w0, w))
            continue
        i = keys.index("edges")
        cell, edge, op = keys[i - 1], keys[i + 1], keys[i + 2]
        if keys[i + 3:] == ("conv", "kernel"):
            convs[cell, edge, CONV1 if op == "conv1" else CONV3] = _terms(w0, w)
            c_out[cell] = w0.shape[-1]
        # else: a search-cell BN scale/bias (affine=True supernet), absent from the reference vector
    dtype = fixed[0].dtype
    zero = jnp.zeros(3, dtype)

    def op_terms(cell, edge, op):
        if op in (CONV1, CONV3):
            return convs[cell, edge, op]
        if op == POOL:  # C_out * 9 entries of 1/9 in both vectors
            return jnp.full(3, c_out[cell] / 9.0, dtype)
        return zero  # none (its paths are dropped in `angles`) and skip_connect

    cells = jnp.stack([jnp.stack([jnp.stack([op_terms(c, e, o) for o in range(NUM_OPS)])
                                  for e in range(NUM_EDGES)]) for c in sorted(c_out)])
    return AngleBlocks(sum(fixed[1:], fixed[0]), cells)


@jax.jit
def angles(blocks: AngleBlocks, archs) -> jax.Array:
    """Angles (radians) of architectures int32[..., 6] -> float[...]; jittable and traceable.

    Every search cell has the same architecture, so the per-cell terms are summed first; each
    path without `none` then adds its edges' terms (an edge on two live paths counts twice)."""
    archs = jnp.asarray(archs, jnp.int32)
    dtype = blocks.cells.dtype
    terms = blocks.cells.sum(0)  # [6, 5, 3]
    picked = terms[jnp.arange(NUM_EDGES), archs]  # [..., 6, 3]
    on_path = jnp.asarray(PATH_EDGES > 0)
    alive = jnp.all((archs[..., None, :] != NONE) | ~on_path, -1)  # [..., 4]
    mult = alive.astype(dtype) @ jnp.asarray(PATH_EDGES, dtype)  # [..., 6] live paths through e
    total = blocks.fixed + jnp.einsum("...e,...ec->...c", mult, picked)
    cos = total[..., 0] / jnp.sqrt(total[..., 1] * total[..., 2])
    return jnp.arccos(jnp.clip(cos, -1.0, 1.0))


def arch_angles(params0, params, archs) -> jax.Array:
    """`angles(angle_blocks(params0, params), archs)`."""
    return angles(angle_blocks(params0, params), archs)
