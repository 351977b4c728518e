"""SMASH on NB201 (issue 31's adapter): a HyperNet generates the supernet's cell convolutions from the
architecture, so `--method smash --space nb201` trains and ranks like SMASH and its scores can be
checked against NB201's ground truth. The SMASH paper defines no NB201 form; this one is jaxnas's.

The HyperNet reads, for every search cell and edge, the architecture's op one-hots (all 6 edges,
+1 / -1 as SMASH's encoding), the edge's, stage's and cell's identity one-hots and the edge's
noise z (`Z_DIM` values per edge, one draw per candidate); two weight-normalised linear layers
with LeakyReLU(0.02) (SMASH's WNC2D: the weight divided by its Frobenius norm, no gain, no bias)
and one output layer per stage give the edge's nor_conv_3x3 and nor_conv_1x1 kernels, each divided
by its norm as SMASH divides its generated 1x1 weights. The supernet (stem, ResNet blocks, head and
BatchNorms) keeps its own weights; its cell kernels are zeros that the forward replaces with the
generated ones, so they receive no gradient and never move.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jaxnas.nn import init as nn_init
from jaxnas.spaces.arch import Choice, check
from jaxnas.spaces.nb201 import cell as nb
from jaxnas.spaces.nb201.networks import NB201SuperNet, SearchCell

Z_DIM = 4      # noise values per edge
HIDDEN = 64    # the HyperNet's hidden width
LEAK = 0.02    # SMASH's LeakyReLU slope


class WNLinear(nnx.Module):
    """x @ W / ||W||_F: SMASH's weight-normalised layer as a dense map (orthogonal init)."""

    def __init__(self, c_in: int, c_out: int, *, rngs: nnx.Rngs):
        self.kernel = nnx.Param(nn_init.orthogonal(rngs.params(), (c_in, c_out)))

    def __call__(self, x):
        w = self.kernel[...]
        return x @ (w / jnp.sqrt(jnp.sum(w * w)))


class EdgeHyperNet(nnx.Module):
    """Features [rows, F] of (cell, edge) rows of one stage -> their conv kernels, by stage."""

    def __init__(self, features: int, widths, *, rngs: nnx.Rngs):
        self.widths = tuple(widths)
        self.trunk = nnx.List([WNLinear(features, HIDDEN, rngs=rngs), WNLinear(HIDDEN, HIDDEN, rngs=rngs)])
        self.heads = nnx.List([WNLinear(HIDDEN, 10 * c * c, rngs=rngs) for c in self.widths])

    def __call__(self, features, stage: int):
        h = features
        for layer in self.trunk:
            h = jax.nn.leaky_relu(layer(h), LEAK)
        c = self.widths[stage]
        out = self.heads[stage](h)                                             # [rows, 10 c c]
        k3 = out[:, :9 * c * c].reshape(-1, 3, 3, c, c)
        k1 = out[:, 9 * c * c:].reshape(-1, 1, 1, c, c)
        norm = lambda k: k / jnp.sqrt(jnp.sum(k * k, (1, 2, 3, 4), keepdims=True))  # noqa: E731
        return norm(k3), norm(k1)


def features(ops, z, N: int):
    """float32 [3, N, 6, F]: the HyperNet's input for every search cell (stage, position) and edge."""
    arch = jnp.where(jax.nn.one_hot(ops, nb.NUM_OPS, dtype=jnp.bool_), 1.0, -1.0).reshape(-1)   # [30]
    stage, pos, edge = jnp.meshgrid(jnp.arange(3), jnp.arange(N), jnp.arange(nb.NUM_EDGES), indexing="ij")
    ident = [jax.nn.one_hot(stage, 3), jax.nn.one_hot(pos, N), jax.nn.one_hot(edge, nb.NUM_EDGES)]
    shape = (3, N, nb.NUM_EDGES)
    return jnp.concatenate([jnp.broadcast_to(arch, (*shape, arch.size)), *ident,
                            jnp.broadcast_to(z, (*shape, Z_DIM))], -1).astype(jnp.float32)


class HyperNB201(nnx.Module):
    """The NB201 supernet whose cell convolutions a HyperNet generates (see the module docstring).
    Its forward reads a candidate {"ops": int32[6], "z": float32[6, Z_DIM]} as a `Choice`."""

    def __init__(self, C: int, N: int, num_classes: int, *, rngs: nnx.Rngs, **supernet_kw):
        self.net = NB201SuperNet(C, N, num_classes, rngs=rngs, **supernet_kw)
        for cell in self._search_cells():
            for edge in cell.edges:
                for op in (edge.conv1, edge.conv3):
                    op.conv.kernel[...] = jnp.zeros_like(op.conv.kernel[...])
        n_features = nb.NUM_EDGES * nb.NUM_OPS + 3 + N + nb.NUM_EDGES + Z_DIM
        self.hypernet = EdgeHyperNet(n_features, (C, 2 * C, 4 * C), rngs=rngs)

    def _search_cells(self):
        return [c for c in self.net.cells if isinstance(c, SearchCell)]

    def __call__(self, x, arch, train: bool = True, *, forward_only: bool = False):
        cand = check(arch, (Choice,)).value
        N = self.net.N
        feats = features(cand["ops"], cand["z"], N)
        cells = self._search_cells()
        for stage in range(3):
            k3, k1 = self.hypernet(feats[stage].reshape(N * nb.NUM_EDGES, -1), stage)
            for i in range(N):
                for e, edge in enumerate(cells[stage * N + i].edges):
                    edge.conv3.conv.kernel[...] = k3[i * nb.NUM_EDGES + e]
                    edge.conv1.conv.kernel[...] = k1[i * nb.NUM_EDGES + e]
        return self.net(x, Choice(cand["ops"]), train, forward_only=forward_only)


def with_noise(key, archs):
    """Candidates for `HyperNB201`: `archs` int32[K, 6], each with its own z [6, Z_DIM] from `key`."""
    z = jax.random.normal(key, (archs.shape[0], nb.NUM_EDGES, Z_DIM), jnp.float32)
    return {"ops": archs, "z": z}


def perturb(key, archs, p: float):
    """Each edge's op of each of `archs` int32[K, 6] redrawn uniformly with probability p (SMASH's
    perturbation, perturb_arch.py, on NB201's one decision per edge)."""
    k_redo, k_op = jax.random.split(key)
    redo = jax.random.uniform(k_redo, archs.shape) < p
    return jnp.where(redo, jax.random.randint(k_op, archs.shape, 0, nb.NUM_OPS, jnp.int32), archs)
