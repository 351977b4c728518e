"""The mobile supernet's weight step on the host: only the operators a step gates on run, each
(cell, operator) its own compiled kernel on the generic tape (`jaxnas.nn.tape`), as the reference
runs them (orashi/NSE_NAS utils/supernet_utils.py su:1185-1249: only the selected branches).

Why: the traced supernet runs a round's whole subset (K operators a cell) on every step, the gated-off
ones multiplied by 0, and XLA:CPU's convolutions (depthwise above all) are slower than PyTorch's; the
weight step of the tiny preset took 7.2 s against the PyTorch twin's 1.8 s (BENCHMARKS.md 16c). Here a
step runs about K/2 operators a cell, and the kernels (stem, head, each (cell, operator)) compile once
per input shape.

Results equal the traced supernet's `Gates` forward (`MobileSupernet`) up to float rounding, BN
statistics included (those of the operators that did not run stay).
"""
from __future__ import annotations

import functools

import jax
import numpy as np

from jaxnas import cpu_kernels
from jaxnas.nn import tape as tp
from jaxnas.spaces.arch import Gates, check


class _Plan(tp.Plan):
    """The modules a pass calls: the stem, the head and every (cell, pool operator)."""

    def layout(self, model):
        self.identity = [c.identity for c in model.layout.cells]
        modules = [(("stem",), model.stem), (("head",), model.head)]
        for c, ops in enumerate(model.cells):
            modules += [(("cells", c, i), op) for i, op in enumerate(ops)]
        return modules


@cpu_kernels.jit(static_argnums=0)
def _scale_vjp(n, x):
    return jax.vjp(lambda h: h / n, x)


def value_and_grad(graphdef, params, stats, images, labels, arch, train: bool = True):
    """((loss, (accuracy, new stats)), grads) of the mean cross-entropy of the multi-branch network
    `arch` (`Gates` of a concrete host bool [cells, pool]): as jax.value_and_grad over the traced
    supernet with those gates."""
    gates = check(arch, (Gates,)).value
    if isinstance(gates, jax.core.Tracer):
        raise TypeError("the mobile host path needs concrete gates (a host array), not traced ones")
    gates = np.asarray(gates, bool)
    tape = tp.Tape(_Plan.of(graphdef, params, stats), params, stats, train, param_grads=True)
    h = tape.module(("stem",), tape.value(images))
    for c, identity in enumerate(tape.plan.identity):
        outs = [tape.module(("cells", c, int(i)), h) for i in np.flatnonzero(gates[c])]
        if not outs:  # an empty identity cell passes its input on
            continue
        terms = [h, *outs] if identity else outs
        h = tape.add(terms)
        if len(terms) > 1:
            h = tape.op(functools.partial(_scale_vjp, len(terms)), h)
    out = tape.module(("head",), h)
    loss, acc, g_logits = tp.loss_vjp(tape.values[out], labels)
    grad_leaves, _, _ = tape.backward(out, g_logits)
    return (loss, (acc, tape.stats())), tape.grads(grad_leaves)
