"""SMASH's memory-bank network on the host tape: exact shapes, one compiled kernel per layer piece.

Why: the traced network (`network.py`) is one program for every architecture, so every conv runs
at the widest dilated extent (9x9) over dense N_max channels: at the tiny preset XLA counts 174
GFLOP for a training step whose architectures do 2.5 (BENCHMARKS.md 15b). Here the architecture is
a concrete host candidate and the network is run as the reference runs it (ajbrock/SMASH SMASH.py
`forward`): a layer reads its banks through the exact [n_in, n_b] slice of the HyperNet's rows
(placed in a 0/1 matrix over the block's used memory channels), each conv is the kernel bank
cropped to its size with its own dilation and groups, writes add output slices into the banks, and
BN runs on the used channels only. Every
piece is a jitted kernel returning its output and pullback (`jaxnas.nn.tape`), compiled once per
shape signature (a conv's: input width, units, kernel, dilation, groups, resolution), so a run
compiles as many kernels as signatures its architectures bring (BENCHMARKS.md 15c counts them).

Grouped convs run as one dense conv with a block-diagonal kernel (`nn.ops.conv` on CPU): XLA:CPU's
grouped conv gradient was 10-40x slower than the dense one at these sizes (BENCHMARKS.md 15, 15c).

`value_and_grad` gives what jax.value_and_grad of the traced `SmashNet` gives for the same
candidate, HyperNet included (tests/spaces/test_smash_eager.py checks it against the PyTorch twin);
`forward` the logits for scoring.
"""
from __future__ import annotations

import functools
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxnas import cpu_kernels
from jaxnas.nn import ops
from jaxnas.nn import tape as tp
from jaxnas.spaces.arch import Choice, check
from jaxnas.spaces.smash.layout import BLOCKS, OPTIONS

# --- the pieces: pure functions of (arrays..., statics...) ---------------------------------------

def _stem(x, stem, keep: int, width: int):
    """relu(7x7 conv), its first `keep` channels (the banks the input fills) zero-padded to the
    block's used `width`."""
    h = jax.nn.relu(ops.conv(x, stem, padding=3))[..., :keep]
    return jnp.pad(h, ((0, 0),) * 3 + ((0, width - keep),))


def _read(memory, w1x1, rows, n_b: int):
    """relu(the read banks' channels @ the generated 1x1 slice / its norm): memory channel c reads
    row rows[c] of `w1x1` (the running row offset of SMASH.py forward; -1: unread), its first n_b
    columns. A matmul over the whole memory (zero rows for unread channels): a channel gather and
    its scatter-add gradient ran slower on XLA:CPU, and the kernel's shape is the same for every
    read set."""
    a = jnp.where(rows[:, None] >= 0, w1x1[jnp.maximum(rows, 0), :n_b], 0.0)
    a = a / jnp.sqrt(jnp.sum(a * a))
    return jax.nn.relu(jnp.einsum("bhwc,co->bhwo", memory, a))


def _conv(x, bank, units: int, kernel: tuple, dilation: tuple, groups: int):
    """conv(relu(x)) with the bank's centre `kernel` crop, its first `units` outputs and first
    c_in / groups inputs (layers.py SMASHC2D); `ops.conv` runs the groups on CPU as the dense conv
    of the block-diagonal kernel."""
    (kh, kw), size = kernel, bank.shape[0]
    top, left = (size - kh) // 2, (size - kw) // 2
    w = bank[top:top + kh, left:left + kw, :x.shape[-1] // groups, :units]
    pad = tuple((k - 1) * d // 2 for k, d in zip(kernel, dilation))
    return ops.conv(jax.nn.relu(x), w, padding=pad, dilation=dilation, groups=groups)


def _write(y, route):
    """The layer's writes as a memory-wide tensor: y @ route, `route` [units, width] the 0/1 matrix
    sending output slice j mod G / bs to the j-th written bank (a matmul, as `_read`)."""
    return jnp.einsum("bhwo,oc->bhwc", y, route)


def _bn(x, bn, stats, train: bool):
    """BatchNorm on x's c channels with the first c of the affine parameters and running statistics;
    the new statistics keep the rest (SMASHBN2D)."""
    c = x.shape[-1]
    y, (mean, var) = ops.batch_norm(x, bn["scale"][:c], bn["bias"][:c], stats["mean"][:c], stats["var"][:c],
                                    train=train, track=True)
    return y, {"mean": stats["mean"].at[:c].set(mean), "var": stats["var"].at[:c].set(var)}


def _transition(memory, bn, trans, stats, keep: int, width: int, train: bool):
    """Block end: avgpool(1x1(relu(BN(memory)))) through the transition's first c rows, then the
    next block's memory (its first `keep` channels zero-padded to `width`); aux: new statistics."""
    h, new = _bn(memory, bn, stats, train)
    h = ops.avg_pool_2x2(jnp.einsum("bhwc,co->bhwo", jax.nn.relu(h), trans[:memory.shape[-1]]))[..., :keep]
    return jnp.pad(h, ((0, 0),) * 3 + ((0, width - keep),)), new


def _head(memory, bn, fc, fc_bias, stats, train: bool):
    """Logits: BN, relu, global average pool, the first c rows of the linear layer; aux: new statistics."""
    h, new = _bn(memory, bn, stats, train)
    return jax.nn.relu(h).mean((1, 2)) @ fc[:memory.shape[-1]] + fc_bias, new


def _weights(params, stats, candidate, graphdef):
    """The generated 1x1 weights of `candidate` (`SmashNet.weights`)."""
    return nnx.merge(graphdef, params, stats, copy=True).weights(candidate)


# --- one kernel per piece and signature ------------------------------------------------------------

@functools.partial(cpu_kernels.jit, static_argnums=(0, 1, 2, 3))
def _kernel(fn, wrt: tuple, aux: bool, statics: tuple, *args):
    """fn(*args, *statics), and when `wrt` (argument positions) its pullback w.r.t. those arguments
    (a pytree of residuals, so it leaves jit): (y, pullback) or (y, aux, pullback); else fn's value."""
    if not wrt:
        return fn(*args, *statics)

    def f(*diff):
        full = list(args)
        for i, v in zip(wrt, diff):
            full[i] = v
        return fn(*full, *statics)
    if aux:
        y, pullback, extra = jax.vjp(f, *(args[i] for i in wrt), has_aux=True)
        return y, extra, pullback
    return jax.vjp(f, *(args[i] for i in wrt))


def kernels_compiled() -> int:
    """Kernels compiled so far (one per piece, shape signature and mode), e.g. for benchmarks."""
    return _kernel.cache_size()


def _into(keys, input_grad: bool = True):
    """The tape record kind of a piece: its pullback's first cotangent is the input's (when
    `input_grad`; else it gives None), the rest are summed into side[key] (a dict's entries into
    side[key + (name,)])."""
    def pull(pullback, g, _key, side):
        grads = tp.pull(pullback, g)
        g_x, rest = (grads[0], grads[1:]) if input_grad else (None, grads)
        for k, r in zip(keys, rest):
            for name, v in (r.items() if isinstance(r, Mapping) else [((), r)]):
                tp.accumulate(side, k + ((name,) if name != () else ()), v)
        return g_x
    return pull


class _Pass:
    """Runs the pieces forward: with `differentiate`, on a tape that records their pullbacks; else
    forward only (values only, nothing kept)."""

    def __init__(self, differentiate: bool):
        self.differentiate = differentiate
        self.tape = tp.Tape(None, {}, {}, True, differentiate)

    def value(self, v):
        return self.tape.value(v)

    def __getitem__(self, i):
        return self.tape.values[i]

    def __call__(self, fn, src, params, rest, statics, keys, aux=False):
        """fn(value src, *params, *rest, *statics), differentiated w.r.t. src (unless it is the images,
        id 0) and `params`, whose gradients go into side[keys]; returns the output's id (and the aux
        value when `aux`)."""
        x = self.tape.values[src]
        if not self.differentiate:
            out = _kernel(fn, (), aux, statics, x, *params, *rest)
            y, extra = out if aux else (out, None)
            return (self.value(y), extra) if aux else self.value(y)
        wrt = tuple(range(0 if src else 1, 1 + len(params)))
        out = _kernel(fn, wrt, aux, statics, x, *params, *rest)
        y, extra, pullback = out if aux else (out[0], None, out[1])
        y_id = self.tape.record(y, src, pullback, _into(keys, input_grad=bool(src)))
        return (y_id, extra) if aux else y_id

    def add(self, ids):
        return self.tape.add(ids)


# --- the host architecture and the passes ----------------------------------------------------------

def _plan(layout, arch):
    """The network of a concrete host architecture, as SMASH.py `forward` reads the reference's
    10-tuple: per block (used width, kept input channels, layers); per layer (the 1x1 row each memory
    channel reads (`_read`), n_b, units, convs [(j, kernel, dilation, groups)], the write matrix
    (`_write`))."""
    N, blocks, start = layout.N, [], 0
    for b in range(BLOCKS):
        bs = int(arch["bank_size"][b])
        bsn, n = bs * N, int(arch["layers"][b])
        n_input = layout.in_channels[b] // bsn
        top = max([n_input] + [int(np.flatnonzero(arch["write"][b, i]).max()) + 1 for i in range(n)
                               if arch["write"][b, i].any()])
        layers = []
        for i in range(n):
            channels = _bank_channels(np.flatnonzero(arch["read"][b, i]), bsn)
            units = int(arch["G"][b, i]) * N
            widen = min(max(len(channels) // units, 1), layout.bottleneck)
            n_b = min(widen * units, len(channels), layout.max_bottleneck * layout.N_max, layout.N_max)
            convs = tuple((j, tuple(int(v) for v in arch["kernel"][b, i, j]),
                           tuple(int(v) for v in arch["dilation"][b, i, j]), int(arch["groups"][b, i, j]))
                          for j in range(len(OPTIONS[0])) if OPTIONS[int(arch["op"][b, i])][j])
            writes = np.flatnonzero(arch["write"][b, i])
            slices = np.arange(len(writes)) % max(int(arch["G"][b, i]) // bs, 1)
            rows = np.full(top * bsn, -1, np.int32)
            rows[channels] = start + np.arange(len(channels))
            route = np.zeros((units, top * bsn), np.float32)
            route[_bank_channels(slices, bsn), _bank_channels(writes, bsn)] = 1.0
            layers.append((rows, n_b, units, convs, route))
            start += len(channels)
        blocks.append((top * bsn, n_input * bsn, layers))
    return blocks


def _bank_channels(banks, bsn):
    """int32: the channels of `banks` (in order), bsn each."""
    return (np.asarray(banks)[:, None] * bsn + np.arange(bsn)).reshape(-1).astype(np.int32)


_layouts: dict = {}


def _layout(graphdef, params, stats):
    """The network's `Layout` (merged once per network structure)."""
    if graphdef not in _layouts:
        _layouts[graphdef] = nnx.merge(graphdef, params, stats, copy=True).layout
    return _layouts[graphdef]


def _run(graphdef, params, stats, images, candidate, train: bool, differentiate: bool):
    """The network on `images` for a `Choice` of one concrete candidate: (pass, logits id, new stats,
    the generated weights' pullback or None)."""
    cand = {k: np.asarray(v) for k, v in check(candidate, (Choice,)).value.items()}
    blocks = _plan(_layout(graphdef, params, stats), cand)
    run = _Pass(differentiate)
    cand_j = {k: jnp.asarray(v) for k, v in cand.items()}
    if differentiate:
        w1x1, hyper_pullback = _kernel(_weights, (0,), False, (graphdef,), params, stats, cand_j)
    else:
        w1x1, hyper_pullback = _kernel(_weights, (), False, (graphdef,), params, stats, cand_j), None
    p, s = params["main"], stats["main"]
    new_stats = {"trans_bn": {}}
    mem = run(_stem, run.value(jnp.asarray(images)), (p["stem"],), (), blocks[0][1::-1], (("stem",),))
    for b, (_, _, layers) in enumerate(blocks):
        for rows, n_b, units, convs, route in layers:
            h = run(_read, mem, (w1x1,), (rows,), (n_b,), (("w1x1",),))
            out = {}
            for j, kernel, dilation, groups in convs:  # w1(w0(h)) + w3(w2(h)) as the op runs them
                out[j] = run(_conv, h if j % 2 == 0 else out[j - 1], (p["banks"][b][j],), (),
                             (units, kernel, dilation, groups), (("banks", b, j),))
            ends = [out[1] if 1 in out else out[0]] + ([out[3] if 3 in out else out[2]] if 2 in out else [])
            mem = run.add([mem, run(_write, run.add(ends), (), (route,), (), ())])
        if b < BLOCKS - 1:
            mem, new_stats["trans_bn"][b] = run(
                _transition, mem, (p["trans_bn"][b], p["trans"][b]), (s["trans_bn"][b],),
                (*blocks[b + 1][1::-1], train), (("trans_bn", b), ("trans", b)), aux=True)
        else:
            mem, new_stats["bn"] = run(_head, mem, (p["bn"], p["fc"], p["fc_bias"]), (s["bn"],), (train,),
                                       (("bn",), ("fc",), ("fc_bias",)), aux=True)
    return run, mem, new_stats, hyper_pullback


def _stats_tree(stats, new):
    """The new statistics in the structure of `stats`."""
    def leaf(path, old):
        k = tp._keys(path)
        if k[1] == "bn":
            return new["bn"][k[2]]
        return new["trans_bn"][k[2]][k[3]]
    return jax.tree_util.tree_map_with_path(leaf, stats)


def forward(graphdef, params, stats, images, candidate, train: bool = False):
    """(logits, new BatchNorm statistics) of one concrete candidate (a `Choice` of host arrays with
    its z). Not for jax.grad: use `value_and_grad`."""
    run, out, new, _ = _run(graphdef, params, stats, images, candidate, train, differentiate=False)
    return run[out], _stats_tree(stats, new)


def value_and_grad(graphdef, params, stats, images, labels, candidate, train: bool = True):
    """((loss, (accuracy, new stats)), grads) of the mean cross-entropy for one concrete candidate
    (a `Choice` of host arrays with its z): what jax.value_and_grad over the traced `SmashNet` gives,
    the HyperNet's gradient through the generated weights included."""
    run, out, new, hyper_pullback = _run(graphdef, params, stats, images, candidate, train, True)
    loss, acc, g_logits = tp.loss_vjp(run[out], labels)
    _, side, _ = run.tape.backward(out, g_logits)
    (grads,) = tp.pull(hyper_pullback, side[("w1x1",)])  # the HyperNet's; zeros on the main network

    def leaf(path, g):
        k = tp._keys(path)
        return side.get(k[1:], g) if k[0] == "main" else g
    return (loss, (acc, _stats_tree(stats, new))), jax.tree_util.tree_map_with_path(leaf, grads)
