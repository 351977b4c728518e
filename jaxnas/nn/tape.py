"""An explicit reverse-mode tape of compiled module kernels, for networks whose structure is chosen
in Python (a concrete host architecture) and run on the host.

Why: on XLA:CPU, convolution gradients inside lax.switch / lax.cond / lax.scan are 10-20x slower
than outside (jax issue #12868), and a branch-free supernet traced as one program can take minutes
to compile. Instead every module call is its own jitted kernel (compiled once per module structure
and input shape), returning its output and its pullback (jax.vjp inside jit: a pytree of
residuals, so it leaves jit). A `Tape` records those pullbacks and `Tape.backward` runs them in
reverse order, the gradients going straight into the flat leaves of the parameter tree; this
computes what jax.grad of the Python composition would, without jax.grad's per-call tracing and
partial evaluation outside jit. Kernels run with YNNPACK on CPU (cpu_kernels).

A space uses it in three parts (NB201: `jaxnas.spaces.nb201.eager`):
  - a `Plan` subclass whose `layout(model)` lists the (path, module) pairs its passes call, each
    path the module's key path in the parameter tree (`Plan.of` builds it once per network);
  - the forward pass in Python on a `Tape(plan, params, stats, train, param_grads)`: values are ids;
    `module(path, h)`, `op(kernel, h)` (a parameter-free kernel: `kernel(x) -> (y, pullback)`),
    `add(ids)`, `zeros_like(h)`, and its own record kinds with `module_args` / `keep_stats` /
    `record(y, h, pullback, pull, key)`, where `pull(pullback, g, key, side)` runs the pullback and
    returns the input's gradient, summing any other gradient into `side[key]` (`accumulate`);
  - `backward(out, g_out)`: (parameter gradient leaves, side gradients, input gradient);
    `grads(leaves)` makes the tree, `stats()` the new BatchNorm statistics.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import nnx

from jaxnas import cpu_kernels
from jaxnas.nn.functional import apply, loss_and_accuracy


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


pull = cpu_kernels.jit(lambda pullback, g: pullback(g))
"""Runs a pullback (returned by a kernel) on a cotangent, compiled."""
add = cpu_kernels.jit(jnp.add)  # jitted calls dispatch asynchronously; eager jnp ops stalled the step


@cpu_kernels.jit
def loss_vjp(logits, labels):
    """(mean cross-entropy, accuracy, d loss / d logits)."""
    (loss, acc), grad = jax.value_and_grad(loss_and_accuracy, has_aux=True)(logits, labels)
    return loss, acc, grad


@functools.cache
def _zeros(shape, dtype, sharding):
    """A shared zero array (arrays are immutable): gradients of the modules that did not run."""
    return jax.device_put(jnp.zeros(shape, dtype), sharding)


def zeros_like(x):
    """A shared zero array shaped, typed and placed like `x`."""
    return _zeros(x.shape, x.dtype, x.sharding)


def accumulate(store, key, g):
    """store[key] += g (set when absent)."""
    store[key] = add(store[key], g) if key in store else g


def _keys(key_path):
    return tuple(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k))) for k in key_path)


_plans: dict = {}  # (plan class, graphdef, params treedef, stats treedef) -> plan


class Plan:
    """Where each module a space's passes call lives in the flat parameter / statistics leaves.
    Subclasses give `layout`; `Plan.of` builds one per network structure and keeps it."""

    def __init__(self, graphdef, params, stats):
        model = nnx.merge(graphdef, params, stats, copy=True)
        p_paths = [_keys(k) for k, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
        s_paths = [_keys(k) for k, _ in jax.tree_util.tree_flatten_with_path(stats)[0]]
        self.modules = {}  # path -> (graphdef, param leaf ids, param treedef, stat leaf ids, stat treedef)

        def pick(paths, path):
            return [i for i, q in enumerate(paths) if q[:len(path)] == path]

        for path, module in self.layout(model):
            g, p, s = nnx.split(module, nnx.Param, nnx.BatchStat)
            p, s = nnx.as_pure(p), nnx.as_pure(s)
            self.modules[path] = (g, pick(p_paths, path), jax.tree.structure(p), pick(s_paths, path),
                                  jax.tree.structure(s))

    def layout(self, model):
        """The (path, module) pairs the passes call: `path` the module's key path in the parameter
        tree (e.g. ("cells", 3, "edges", 0)), `module` that submodule of `model`. May set
        attributes the passes read (NB201: which cells are ResNet blocks)."""
        raise NotImplementedError

    @classmethod
    def of(cls, graphdef, params, stats):
        """The plan of this network structure (built once, then cached)."""
        key = (cls, graphdef, jax.tree.structure(params), jax.tree.structure(stats))
        plan = _plans.get(key)
        if plan is None:
            plan = _plans[key] = cls(graphdef, params, stats)
        return plan


_MODULE, _OP, _ADD = "module", "op", "add"


class Tape:
    """Runs kernels forward, records their pullbacks, and runs them backward (`backward`). Values
    are ids into `values`; id 0 is the first value given (the network's input)."""

    def __init__(self, plan: Plan, params, stats, train: bool, param_grads: bool):
        self.plan, self.train, self.param_grads = plan, train, param_grads
        self.p_leaves, self.p_def = jax.tree.flatten(params)
        s_leaves, self.s_def = jax.tree.flatten(stats)
        self.s_leaves, self.new_stats = s_leaves, list(s_leaves)
        self.values, self.records = [], []  # records: (output id, kind, input ids, pullback, key)

    def value(self, v):
        """Puts an array on the tape: its id."""
        self.values.append(v)
        return len(self.values) - 1

    def module_args(self, path):
        """(graphdef, params, stats) of the module at `path`, for a kernel."""
        g, pi, pdef, si, sdef = self.plan.modules[path]
        return g, jax.tree.unflatten(pdef, [self.p_leaves[i] for i in pi]), \
            jax.tree.unflatten(sdef, [self.s_leaves[i] for i in si])

    def keep_stats(self, path, stats):
        """Records the new BatchNorm statistics of the module at `path`."""
        for i, leaf in zip(self.plan.modules[path][3], jax.tree.leaves(stats)):
            self.new_stats[i] = leaf

    def module(self, path, h):
        """The module at `path` applied to value `h` (its parameter gradients when `param_grads`)."""
        y, stats, pullback = _module_vjp(*self.module_args(path), self.values[h], self.train,
                                         self.param_grads)
        self.keep_stats(path, stats)
        out = self.value(y)
        self.records.append((out, _MODULE, (h,), pullback, path))
        return out

    def op(self, kernel, h):
        """A parameter-free op: `kernel(x) -> (y, pullback)`, a compiled jax.vjp."""
        y, pullback = kernel(self.values[h])
        out = self.value(y)
        self.records.append((out, _OP, (h,), pullback, None))
        return out

    def record(self, y, h, pullback, pull_fn, key=None):
        """A value `y` computed from value `h` by a space's own kernel: in `backward`,
        `pull_fn(pullback, g, key, side)` gets y's cotangent g, returns h's, and may sum other
        gradients into the dict `side` (`accumulate(side, key, g_other)`)."""
        out = self.value(y)
        self.records.append((out, pull_fn, (h,), pullback, key))
        return out

    def add(self, ids):
        """The sum of values `ids` (left to right)."""
        if len(ids) == 1:
            return ids[0]
        total = self.values[ids[0]]
        for i in ids[1:]:
            total = add(total, self.values[i])
        out = self.value(total)
        self.records.append((out, _ADD, tuple(ids), None, None))
        return out

    def zeros_like(self, h):
        """A zero value like value `h` (no gradient flows through it)."""
        return self.value(zeros_like(self.values[h]))

    def backward(self, out, g_out, input_grad=False):
        """Cotangents from `out` back to value 0: (param grad leaves, None where no gradient came, or
        None when not `param_grads`; side gradients by key, from the space's records; value 0's
        gradient if `input_grad` else None). Values that do not reach `out` get no cotangent
        (their gradients are zero)."""
        cot = {out: g_out}
        grad_leaves = [None] * len(self.p_leaves)
        side = {}

        for out_id, kind, inputs, pullback, key in reversed(self.records):
            if out_id not in cot:
                continue
            g = cot.pop(out_id)
            if kind is _MODULE:
                if not inputs[0] and not (self.param_grads or input_grad):
                    continue  # a module on the input: its pullback would give only the input's gradient
                if self.param_grads:
                    g_params, g_x = pull(pullback, g)
                    for i, leaf in zip(self.plan.modules[key][1], jax.tree.leaves(g_params)):
                        grad_leaves[i] = leaf
                else:
                    (g_x,) = pull(pullback, g)
            elif kind is _ADD:
                for i in inputs:
                    accumulate(cot, i, g)
                continue
            elif kind is _OP:
                (g_x,) = pull(pullback, g)
            else:
                g_x = kind(pullback, g, key, side)
            if inputs[0] or input_grad:  # value 0 is the input
                accumulate(cot, inputs[0], g_x)
        return grad_leaves, side, cot.get(0)

    def grads(self, grad_leaves):
        """The parameter gradients as a tree like the parameters (zeros for modules that did not run)."""
        return jax.tree.unflatten(self.p_def, [_zeros(p.shape, p.dtype, p.sharding) if g is None else g
                                               for g, p in zip(grad_leaves, self.p_leaves)])

    def stats(self):
        """The BatchNorm statistics after the forward pass (unchanged for modules that did not run)."""
        return jax.tree.unflatten(self.s_def, self.new_stats)
