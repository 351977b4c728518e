"""Single-path and weighted supernet passes with one compiled kernel per module, the architecture
chosen in Python, and the reverse pass driven from Python too.

Why: on XLA:CPU, convolution gradients inside lax.switch / lax.cond / lax.scan are 10-20x slower
than outside (jax issue #12868), and the branch-free `merged` supernet, unrolled over C=16, N=5,
compiled for ~10 minutes and took 40-84 s per fwd+bwd at batch 64 where PyTorch takes ~1 s
(benchmarks/BENCHMARKS.md, section 1). Here the architecture is a concrete host array: each cell
runs only its chosen ops, and every module call (stem, ReLU-conv-BN, ResNet block, head, pooling;
in weighted mode a whole mixed edge) is its own jitted kernel, compiled once per module structure
and input shape (a handful per network, seconds in all). Each kernel returns its output and its
pullback (jax.vjp inside jit: a pytree of residuals), a tape records them, and the backward pass
runs the pullbacks in reverse order, the gradients going straight into the flat leaves of the
parameter tree. An earlier version let jax.grad differentiate through the Python composition of
the kernels; the explicit tape computes the same values without jax.grad's per-call tracing and
partial evaluation outside jit (15% of the step). Kernels run with YNNPACK on CPU (cpu_kernels).

The tape is generic (`jaxnas.nn.tape`); NB201's part is here: which modules the passes call
(`_Plan`), the cell functions, the weighted mode's mixed-edge kernel and its record kind (its
pullback gives the input's gradient and the edge's op-weight gradient), and the public passes
below, which `NB201Space.host_passes` exposes.

Results equal the traced supernet (a `Choice`: `impl` merged / switch / mask; `Weights`)
up to float rounding, including which BatchNorm running statistics move (only the ops that ran).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxnas import cpu_kernels
from jaxnas.nn import tape as tp
from jaxnas.nn.ops import ResNetBlock, avg_pool_3x3
from jaxnas.spaces.arch import Choice, Weights, check
from jaxnas.spaces.nb201 import cell as nb

# --- NB201's kernels and plan on the generic tape (jaxnas.nn.tape) ----------------------------

@cpu_kernels.jit(static_argnums=(0, 5))
def _mixed_edge_vjp(graphdef, params, stats, x, w, train):
    """A weighted-mode edge, sum_k w[k] op_k(x) (none adds nothing), in one kernel; the pullback
    gives (input grad, grad of the op weights w [5]). No weight gradients: nothing uses them."""
    def f(h, w):
        edge = nnx.merge(graphdef, params, stats, copy=True)
        y = (w[nb.SKIP] * h + w[nb.CONV1] * edge.conv1(h, train)
             + w[nb.CONV3] * edge.conv3(h, train) + w[nb.POOL] * avg_pool_3x3(h))
        return y, nnx.as_pure(nnx.state(edge, nnx.BatchStat))
    y, pullback, new_stats = jax.vjp(f, x, w, has_aux=True)
    return y, new_stats, pullback


_pool_vjp = cpu_kernels.jit(lambda x: jax.vjp(avg_pool_3x3, x))


def _pull_edge(pullback, g, e, side):
    """The mixed edge's record kind: the input's gradient; edge e's op-weight gradient into side[e]."""
    g_x, g_w = tp.pull(pullback, g)
    tp.accumulate(side, e, g_w)
    return g_x


class _Plan(tp.Plan):
    """The modules the passes call: stem, head, ResNet reduction blocks, and of every search cell
    each edge (weighted mode) and its conv1 / conv3 (single path)."""

    def layout(self, model):
        modules = [(("stem",), model.stem), (("head",), model.head)]
        self.resnet = set()
        for i, cell in enumerate(model.cells):
            if isinstance(cell, ResNetBlock):
                self.resnet.add(i)
                modules.append((("cells", i), cell))
                continue
            for e in range(nb.NUM_EDGES):
                modules += [(("cells", i, "edges", e), cell.edges[e]),
                            (("cells", i, "edges", e, "conv1"), cell.edges[e].conv1),
                            (("cells", i, "edges", e, "conv3"), cell.edges[e].conv3)]
        self.num_cells = len(model.cells)
        return modules


def _tape(graphdef, params, stats, train, param_grads):
    return tp.Tape(_Plan.of(graphdef, params, stats), params, stats, train, param_grads)


def _network(tape, images, cell_fn):
    """Stem, cells (`cell_fn(tape, cell index, input id)` for search cells), head: the logits id."""
    h = tape.module(("stem",), tape.value(images))
    for c in range(tape.plan.num_cells):
        h = tape.module(("cells", c), h) if c in tape.plan.resnet else cell_fn(tape, c, h)
    return tape.module(("head",), h)


def _tape_single_cell(tape, c, h, arch):
    nodes = [h]
    for i in range(1, nb.NUM_NODES):
        terms = []
        for e, j in nb.NODE_INPUTS[i]:
            op = int(arch[e])
            if op == nb.NONE:
                continue
            if op == nb.SKIP:
                terms.append(nodes[j])
            elif op == nb.POOL:
                terms.append(tape.op(_pool_vjp, nodes[j]))
            else:
                terms.append(tape.module(("cells", c, "edges", e, "conv1" if op == nb.CONV1 else "conv3"),
                                         nodes[j]))
        nodes.append(tape.add(terms) if terms else tape.zeros_like(h))
    return nodes[-1]


def _mixed_edge(tape, c, e, h, w):
    """Edge e of cell c on value h, mixed by its op weights w [5] (`_mixed_edge_vjp`)."""
    path = ("cells", c, "edges", e)
    y, stats, pullback = _mixed_edge_vjp(*tape.module_args(path), tape.values[h], w, tape.train)
    tape.keep_stats(path, stats)
    return tape.record(y, h, pullback, _pull_edge, e)


def _tape_weighted_cell(tape, c, h, weights):
    nodes = [h]
    for i in range(1, nb.NUM_NODES):
        nodes.append(tape.add([_mixed_edge(tape, c, e, nodes[j], weights[e])
                               for e, j in nb.NODE_INPUTS[i]]))
    return nodes[-1]


def _run(graphdef, params, stats, images, arch, train, param_grads):
    """The forward pass on a tape: (tape, id of the logits). Checks the architecture argument:
    a `Choice` of a concrete host int array [6] (only the chosen ops run) or `Weights` float [6, 5]
    (every op runs)."""
    check(arch, (Choice, Weights))
    a = arch.value
    if isinstance(arch, Choice):
        if isinstance(a, jax.core.Tracer):
            raise ValueError("the eager single path needs a concrete architecture (a host array), not a "  # noqa: TRY004
                             "traced one")
        a = np.asarray(a)
        if a.shape != (nb.NUM_EDGES,):
            raise ValueError(f"the eager single path takes one architecture of shape [6], got {a.shape}")
        cell = _tape_single_cell
    else:
        if tuple(a.shape) != (nb.NUM_EDGES, nb.NUM_OPS):
            raise ValueError(f"Weights takes op weights of shape [6, 5], got {tuple(a.shape)}")
        cell = _tape_weighted_cell
    tape = _tape(graphdef, params, stats, train, param_grads)
    return tape, _network(tape, images, lambda t, c, h: cell(t, c, h, a))


def forward(graphdef, params, stats, images, arch, train: bool = True):
    """Logits of the supernet and the new BatchNorm statistics for `arch`: a `Choice` of a concrete
    host int array [6] or `Weights` [6, 5]. Not for jax.grad: use `value_and_grad` /
    `weights_value_and_grad`."""
    tape, out = _run(graphdef, params, stats, images, arch, train, param_grads=False)
    return tape.values[out], tape.stats()


def value_and_grad(graphdef, params, stats, images, labels, arch, train: bool = True):
    """((loss, (accuracy, new stats)), grads) of the mean cross-entropy of the single-path network
    `arch` (a `Choice` of a concrete host int array [6]): the same as jax.value_and_grad over the
    traced supernet."""
    tape, out = _run(graphdef, params, stats, images, check(arch, (Choice,)), train, param_grads=True)
    loss, acc, g_logits = tp.loss_vjp(tape.values[out], labels)
    grad_leaves, _, _ = tape.backward(out, g_logits)
    return (loss, (acc, tape.stats())), tape.grads(grad_leaves)


def summed_logits_grad(graphdef, params, stats, images, arch, train: bool = True, wrt: str = "params"):
    """d sum(logits) / d params (a tree like `params`) or / d images, for the single-path network
    `arch` (a `Choice` of a concrete host int array [6]): as jax.grad of the traced supernet's
    summed logits.
    The gradients synflow (wrt params) and jacov (wrt images) are built from."""
    if wrt not in ("params", "images"):
        raise ValueError(f"wrt must be 'params' or 'images', got {wrt!r}")
    tape, out = _run(graphdef, params, stats, images, check(arch, (Choice,)), train,
                     param_grads=wrt == "params")
    grad_leaves, _, g_images = tape.backward(out, _ones_like(tape.values[out]), input_grad=wrt == "images")
    if wrt == "params":
        return tape.grads(grad_leaves)
    # no path from the images to the logits (every cell's output node is cut off from its input,
    # e.g. |none~0|+|..|+|none~0|nor_conv_3x3~1|none~2|): the gradient is exactly zero
    return tp.zeros_like(jnp.asarray(images)) if g_images is None else g_images


def block_pullbacks(graphdef, params, stats, images, arch, probe=None, train: bool = True):
    """The network before its head block by block, as `NB201SuperNet.blocks` traced (AZ-NAS):
    (features, pairs). features: the outputs of the stem and of every cell / ResNet block, in
    order, for the single-path network `arch` (a `Choice` of a concrete host int array [6]). With
    `probe(i, y)` giving a cotangent g for the output y of block i (1 .. L), pairs[i - 1] is
    (g, g_in), g_in its pullback through block i alone (J_i^T g, J_i = d y / d block i's input;
    zeros when no path joins them); without it pairs is []. Each block runs on its own tape."""
    a = check(arch, (Choice,)).value
    if isinstance(a, jax.core.Tracer):
        raise TypeError("the eager single path needs a concrete architecture (a host array), not a traced "
                        "one")
    a = np.asarray(a)
    if a.shape != (nb.NUM_EDGES,):
        raise ValueError(f"the eager single path takes one architecture of shape [6], got {a.shape}")
    features, pairs, h = [], [], images
    for i in range(_Plan.of(graphdef, params, stats).num_cells + 1):
        tape = _tape(graphdef, params, stats, train, param_grads=False)
        x = tape.value(h)
        if i == 0:
            out = tape.module(("stem",), x)
        elif i - 1 in tape.plan.resnet:
            out = tape.module(("cells", i - 1), x)
        else:
            out = _tape_single_cell(tape, i - 1, x, a)
        h = tape.values[out]
        if i and probe is not None:
            g = probe(i, h)
            g_in = tape.backward(out, g, input_grad=True)[2]
            pairs.append((g, tp.zeros_like(tape.values[x]) if g_in is None else g_in))
        features.append(h)
    return features, pairs


def weights_value_and_grad(graphdef, params, stats, images, labels, weights, train: bool = True):
    """((loss, (accuracy, new stats)), d loss / d weights) of `weights` (`Weights` of float [6, 5]:
    every op of every edge mixed by it), as jax.value_and_grad over the traced supernet with
    respect to the weights (the gradient as `Weights` too); no gradient of the network's
    parameters is computed."""
    tape, out = _run(graphdef, params, stats, images, check(weights, (Weights,)), train, param_grads=False)
    loss, acc, g_logits = tp.loss_vjp(tape.values[out], labels)
    _, grad_w, _ = tape.backward(out, g_logits)
    rows = [grad_w[e] if e in grad_w else tp.zeros_like(weights.value[e]) for e in range(nb.NUM_EDGES)]
    return (loss, (acc, tape.stats())), Weights(_stack(rows))


_stack = cpu_kernels.jit(jnp.stack)
_ones_like = cpu_kernels.jit(jnp.ones_like)
