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

Results equal the traced supernet (a `Choice`: `impl` merged / switch / mask; `Weights`)
up to float rounding, including which BatchNorm running statistics move (only the ops that ran).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxnas import cpu_kernels
from jaxnas.nn.functional import apply, loss_and_accuracy
from jaxnas.nn.ops import ResNetBlock, avg_pool_3x3
from jaxnas.spaces.arch import Choice, Weights, check
from jaxnas.spaces.nb201 import cell as nb

# --- loss and gradients with an explicit tape -----------------------------------------------

@cpu_kernels.jit(static_argnums=(0, 4, 5))
def _module_vjp(graphdef, params, stats, x, train, param_grads):
    """One module's forward and its pullback (a pytree of residuals, so it leaves jit); the
    pullback gives (parameter grads, input grad), or the input grad alone."""
    def f(p, h):
        return apply(graphdef, p, stats, h, train)
    if param_grads:
        y, pullback, new_stats = jax.vjp(f, params, x, has_aux=True)
    else:
        y, pullback, new_stats = jax.vjp(lambda h: f(params, h), x, has_aux=True)
    return y, new_stats, pullback


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
_pull = cpu_kernels.jit(lambda pullback, g: pullback(g))
_add = cpu_kernels.jit(jnp.add)  # jitted calls dispatch asynchronously; eager jnp ops stalled the step


@cpu_kernels.jit
def _loss_vjp(logits, labels):
    (loss, acc), grad = jax.value_and_grad(loss_and_accuracy, has_aux=True)(logits, labels)
    return loss, acc, grad


@functools.cache
def _zeros(shape, dtype, sharding):
    """A shared zero array (arrays are immutable): gradients of the ops that did not run."""
    return jax.device_put(jnp.zeros(shape, dtype), sharding)


def _like(x):
    return x.shape, x.dtype, x.sharding


def _keys(key_path):
    return tuple(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k))) for k in key_path)


class _Plan:
    """Where each module of a supernet lives in the flat parameter / statistics leaves."""

    def __init__(self, graphdef, params, stats):
        model = nnx.merge(graphdef, params, stats, copy=True)
        p_paths = [_keys(k) for k, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
        s_paths = [_keys(k) for k, _ in jax.tree_util.tree_flatten_with_path(stats)[0]]
        self.modules = {}  # path -> (graphdef, param leaf ids, param treedef, stat leaf ids, stat treedef)

        def add(path, module):
            g, p, s = nnx.split(module, nnx.Param, nnx.BatchStat)
            p, s = nnx.as_pure(p), nnx.as_pure(s)
            pick = lambda paths: [i for i, q in enumerate(paths) if q[:len(path)] == path]
            self.modules[path] = (g, pick(p_paths), jax.tree.structure(p), pick(s_paths), jax.tree.structure(s))

        add(("stem",), model.stem)
        add(("head",), model.head)
        self.resnet = set()
        for i, cell in enumerate(model.cells):
            if isinstance(cell, ResNetBlock):
                self.resnet.add(i)
                add(("cells", i), cell)
                continue
            for e in range(nb.NUM_EDGES):
                add(("cells", i, "edges", e), cell.edges[e])
                add(("cells", i, "edges", e, "conv1"), cell.edges[e].conv1)
                add(("cells", i, "edges", e, "conv3"), cell.edges[e].conv3)
        self.num_cells = len(model.cells)


_plans: dict = {}


class _Tape:
    """Runs kernels forward, records their pullbacks, and runs them backward (`backward`)."""

    def __init__(self, graphdef, params, stats, train, param_grads):
        key = (graphdef, jax.tree.structure(params), jax.tree.structure(stats))
        if key not in _plans:
            _plans[key] = _Plan(graphdef, params, stats)
        self.plan, self.train, self.param_grads = _plans[key], train, param_grads
        self.p_leaves, self.p_def = jax.tree.flatten(params)
        s_leaves, self.s_def = jax.tree.flatten(stats)
        self.s_leaves, self.new_stats = s_leaves, list(s_leaves)
        self.values, self.records = [], []  # records: (output id, kind, input ids, pullback, key)

    def value(self, v):
        self.values.append(v)
        return len(self.values) - 1

    def _module_args(self, path):
        g, pi, pdef, si, sdef = self.plan.modules[path]
        return g, jax.tree.unflatten(pdef, [self.p_leaves[i] for i in pi]), \
            jax.tree.unflatten(sdef, [self.s_leaves[i] for i in si])

    def _keep_stats(self, path, stats):
        for i, leaf in zip(self.plan.modules[path][3], jax.tree.leaves(stats)):
            self.new_stats[i] = leaf

    def module(self, path, h):
        y, stats, pullback = _module_vjp(*self._module_args(path), self.values[h], self.train, self.param_grads)
        self._keep_stats(path, stats)
        out = self.value(y)
        self.records.append((out, "module", (h,), pullback, path))
        return out

    def mixed_edge(self, path, h, weights, e):
        y, stats, pullback = _mixed_edge_vjp(*self._module_args(path), self.values[h], weights[e], self.train)
        self._keep_stats(path, stats)
        out = self.value(y)
        self.records.append((out, "edge", (h,), pullback, e))
        return out

    def pool(self, h):
        y, pullback = _pool_vjp(self.values[h])
        out = self.value(y)
        self.records.append((out, "pool", (h,), pullback, None))
        return out

    def add(self, ids):
        if len(ids) == 1:
            return ids[0]
        total = self.values[ids[0]]
        for i in ids[1:]:
            total = _add(total, self.values[i])
        out = self.value(total)
        self.records.append((out, "add", tuple(ids), None, None))
        return out

    def zeros_like(self, h):
        return self.value(_zeros(*_like(self.values[h])))

    def network(self, images, cell_fn):
        """Stem, cells (`cell_fn(tape, cell index, input id)` for search cells), head: the logits id."""
        h = self.module(("stem",), self.value(images))
        for c in range(self.plan.num_cells):
            h = self.module(("cells", c), h) if c in self.plan.resnet else cell_fn(self, c, h)
        return self.module(("head",), h)

    def backward(self, out, g_out, input_grad=False):
        """Cotangents from `out` back to the images: (param grad leaves or None, edge weight grads
        by edge, the images' gradient if `input_grad` else None). Values that do not reach `out` get
        no cotangent (their gradients are zero)."""
        cot = {out: g_out}
        grad_leaves = [None] * len(self.p_leaves)
        grad_w = {}

        def accumulate(store, i, g):
            store[i] = _add(store[i], g) if i in store else g

        for out_id, kind, inputs, pullback, key in reversed(self.records):
            if out_id not in cot:
                continue
            g = cot.pop(out_id)
            if kind == "module" and not inputs[0] and not (self.param_grads or input_grad):
                continue  # the stem's pullback would give only the images' gradient, not asked for
            if kind == "add":
                for i in inputs:
                    accumulate(cot, i, g)
                continue
            if kind == "pool":
                (g_x,) = _pull(pullback, g)
            elif kind == "edge":
                g_x, g_w = _pull(pullback, g)
                accumulate(grad_w, key, g_w)
            elif self.param_grads:
                g_params, g_x = _pull(pullback, g)
                for i, leaf in zip(self.plan.modules[key][1], jax.tree.leaves(g_params)):
                    grad_leaves[i] = leaf
            else:
                (g_x,) = _pull(pullback, g)
            if inputs[0] or input_grad:  # value 0 is the images
                accumulate(cot, inputs[0], g_x)
        return grad_leaves, grad_w, cot.get(0)

    def stats(self):
        return jax.tree.unflatten(self.s_def, self.new_stats)


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
                terms.append(tape.pool(nodes[j]))
            else:
                terms.append(tape.module(("cells", c, "edges", e, "conv1" if op == nb.CONV1 else "conv3"), nodes[j]))
        nodes.append(tape.add(terms) if terms else tape.zeros_like(h))
    return nodes[-1]


def _tape_weighted_cell(tape, c, h, weights):
    nodes = [h]
    for i in range(1, nb.NUM_NODES):
        nodes.append(tape.add([tape.mixed_edge(("cells", c, "edges", e), nodes[j], weights, e)
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
            raise ValueError("the eager single path needs a concrete architecture (a host array), not a traced one")
        a = np.asarray(a)
        if a.shape != (nb.NUM_EDGES,):
            raise ValueError(f"the eager single path takes one architecture of shape [6], got {a.shape}")
        cell = _tape_single_cell
    else:
        if tuple(a.shape) != (nb.NUM_EDGES, nb.NUM_OPS):
            raise ValueError(f"Weights takes op weights of shape [6, 5], got {tuple(a.shape)}")
        cell = _tape_weighted_cell
    tape = _Tape(graphdef, params, stats, train, param_grads)
    return tape, tape.network(images, lambda t, c, h: cell(t, c, h, a))


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
    loss, acc, g_logits = _loss_vjp(tape.values[out], labels)
    grad_leaves, _, _ = tape.backward(out, g_logits)
    return (loss, (acc, tape.stats())), _grad_tree(tape, grad_leaves)


def _grad_tree(tape, grad_leaves):
    """The parameter gradients as a tree like the parameters (zeros for the ops that did not run)."""
    return jax.tree.unflatten(tape.p_def, [_zeros(*_like(p)) if g is None else g
                                           for g, p in zip(grad_leaves, tape.p_leaves)])


def summed_logits_grad(graphdef, params, stats, images, arch, train: bool = True, wrt: str = "params"):
    """d sum(logits) / d params (a tree like `params`) or / d images, for the single-path network
    `arch` (a `Choice` of a concrete host int array [6]): as jax.grad of the traced supernet's
    summed logits.
    The gradients synflow (wrt params) and jacov (wrt images) are built from."""
    if wrt not in ("params", "images"):
        raise ValueError(f"wrt must be 'params' or 'images', got {wrt!r}")
    tape, out = _run(graphdef, params, stats, images, check(arch, (Choice,)), train, param_grads=wrt == "params")
    grad_leaves, _, g_images = tape.backward(out, _ones_like(tape.values[out]), input_grad=wrt == "images")
    if wrt == "params":
        return _grad_tree(tape, grad_leaves)
    # no path from the images to the logits (every cell's output node is cut off from its input,
    # e.g. |none~0|+|..|+|none~0|nor_conv_3x3~1|none~2|): the gradient is exactly zero
    return _zeros(*_like(jnp.asarray(images))) if g_images is None else g_images


def block_pullbacks(graphdef, params, stats, images, arch, probe=None, train: bool = True):
    """The network before its head block by block, as `NB201SuperNet.blocks` traced (AZ-NAS):
    (features, pairs). features: the outputs of the stem and of every cell / ResNet block, in
    order, for the single-path network `arch` (a `Choice` of a concrete host int array [6]). With
    `probe(i, y)` giving a cotangent g for the output y of block i (1 .. L), pairs[i - 1] is
    (g, g_in), g_in its pullback through block i alone (J_i^T g, J_i = d y / d block i's input;
    zeros when no path joins them); without it pairs is []. Each block runs on its own tape."""
    a = check(arch, (Choice,)).value
    if isinstance(a, jax.core.Tracer):
        raise TypeError("the eager single path needs a concrete architecture (a host array), not a traced one")
    a = np.asarray(a)
    if a.shape != (nb.NUM_EDGES,):
        raise ValueError(f"the eager single path takes one architecture of shape [6], got {a.shape}")
    features, pairs, h = [], [], images
    for i in range(_Tape(graphdef, params, stats, train, False).plan.num_cells + 1):
        tape = _Tape(graphdef, params, stats, train, param_grads=False)
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
            pairs.append((g, _zeros(*_like(tape.values[x])) if g_in is None else g_in))
        features.append(h)
    return features, pairs


def weights_value_and_grad(graphdef, params, stats, images, labels, weights, train: bool = True):
    """((loss, (accuracy, new stats)), d loss / d weights) of `weights` (`Weights` of float [6, 5]:
    every op of every edge mixed by it), as jax.value_and_grad over the traced supernet with
    respect to the weights (the gradient as `Weights` too); no gradient of the network's
    parameters is computed."""
    tape, out = _run(graphdef, params, stats, images, check(weights, (Weights,)), train, param_grads=False)
    loss, acc, g_logits = _loss_vjp(tape.values[out], labels)
    _, grad_w, _ = tape.backward(out, g_logits)
    rows = [grad_w[e] if e in grad_w else _zeros(*_like(weights.value[e])) for e in range(nb.NUM_EDGES)]
    return (loss, (acc, tape.stats())), Weights(_stack(rows))


_stack = cpu_kernels.jit(jnp.stack)
_ones_like = cpu_kernels.jit(jnp.ones_like)
