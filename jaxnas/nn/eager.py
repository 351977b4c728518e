"""Single-path loss and gradients with one compiled kernel per module, the architecture chosen in Python.

Why: on XLA:CPU, convolution gradients inside lax.switch / lax.cond / lax.scan are 10-20x slower
than outside (jax issue #12868), and the branch-free `merged` supernet, unrolled over C=16, N=5,
compiled for ~10 minutes and took 40-84 s per fwd+bwd at batch 64 where PyTorch takes ~1 s
(benchmarks/BENCHMARKS.md, section 1). Here the architecture is a concrete host array: each cell
runs only its chosen ops, every module call (stem, ReLU-conv-BN, ResNet block, head, pooling) is
its own jitted kernel, compiled once per module structure and input shape (a handful per network,
seconds in all), and JAX's autodiff differentiates through the Python composition, so the
backward pass runs each kernel's own compiled gradient outside any control flow.

The result equals the traced forward (single path: `impl` merged / switch / mask; weighted mode)
up to float rounding, including which BatchNorm running statistics move (only the ops that ran).
Weighted mode (SETN's evaluator step) runs every op the same way, the mixing weights traced.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxnas.nn.functional import apply
from jaxnas.nn.ops import ResNetBlock, avg_pool_3x3
from jaxnas.spaces import nb201


@functools.partial(jax.jit, static_argnums=(0, 4))
def _module_kernel(graphdef, params, stats, x, train):
    """One module's forward, compiled per (structure, shapes): returns (y, new running stats)."""
    return apply(graphdef, params, stats, x, train)


_pool = jax.jit(avg_pool_3x3)


def _run(module, x, train):
    """Call `module(x, train)` through its compiled kernel and write its new statistics back."""
    graphdef, params, stats = nnx.split(module, nnx.Param, nnx.BatchStat)
    y, new_stats = _module_kernel(graphdef, nnx.as_pure(params), nnx.as_pure(stats), x, train)
    nnx.update(module, new_stats)
    return y


def _single_cell(cell, x, arch, train):
    """A search cell with a concrete single-path architecture: only the chosen op of each edge runs."""
    nodes = [x]
    for i in range(1, nb201.NUM_NODES):
        terms = []
        for e, (to, j) in enumerate(nb201.EDGES):
            op = int(arch[e])
            if to != i or op == nb201.NONE:
                continue
            if op == nb201.SKIP:
                terms.append(nodes[j])
            elif op == nb201.POOL:
                terms.append(_pool(nodes[j]))
            else:
                edge = cell.edges[e]
                terms.append(_run(edge.conv1 if op == nb201.CONV1 else edge.conv3, nodes[j], train))
        nodes.append(sum(terms[1:], terms[0]) if terms else jnp.zeros_like(x))
    return nodes[-1]


def _weighted_cell(cell, x, weights, train):
    """A search cell in weighted ("joint") mode: every op of every edge runs, mixed by `weights`
    [6, 5] (values may be traced, e.g. softmax(alpha) under jax.grad); none contributes zero."""
    nodes = [x]
    for i in range(1, nb201.NUM_NODES):
        acc = None
        for e, (to, j) in enumerate(nb201.EDGES):
            if to != i:
                continue
            edge, h, w = cell.edges[e], nodes[j], weights[e]
            term = (w[nb201.SKIP] * h + w[nb201.CONV1] * _run(edge.conv1, h, train)
                    + w[nb201.CONV3] * _run(edge.conv3, h, train) + w[nb201.POOL] * _pool(h))
            acc = term if acc is None else acc + term
        nodes.append(acc)
    return nodes[-1]


def forward(graphdef, params, stats, images, arch, train: bool = True, mode: str = "single"):
    """Logits of the supernet and the new BatchNorm statistics, differentiable with jax.grad outside jit.

    mode "single": `arch` is a concrete host int array [6] (only the chosen ops run);
    mode "weighted": `arch` is float [6, 5] op weights (may be traced; every op runs).
    """
    if mode == "single":
        if isinstance(arch, jax.core.Tracer):
            raise ValueError("the eager single path needs a concrete architecture (a host array), not a traced one")
        arch = np.asarray(arch)
        if arch.shape != (nb201.NUM_EDGES,):
            raise ValueError(f"the eager single path takes one architecture of shape [6], got {arch.shape}")
        cell_fn = _single_cell
    elif mode == "weighted":
        if tuple(arch.shape) != (nb201.NUM_EDGES, nb201.NUM_OPS):
            raise ValueError(f"weighted mode takes op weights of shape [6, 5], got {tuple(arch.shape)}")
        cell_fn = _weighted_cell
    else:
        raise ValueError(f"the eager forward supports modes 'single' and 'weighted', got {mode!r}")
    model = nnx.merge(graphdef, params, stats, copy=True)
    h = _run(model.stem, images, train)
    for cell in model.cells:
        h = _run(cell, h, train) if isinstance(cell, ResNetBlock) else cell_fn(cell, h, arch, train)
    logits = _run(model.head, h, train)
    return logits, nnx.as_pure(nnx.state(model, nnx.BatchStat))
