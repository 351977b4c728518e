"""NAS-Bench-201 networks: the standalone network of one architecture and the supernet.

Macro skeleton (xautodl/models/cell_infers/tiny_network.py and cell_searchs/search_model_setn.py):
stem Conv3x3+BN; three stages of N cells at C, 2C, 4C channels with a stride-2 ResNet basic block
between stages; BN+ReLU, global average pooling and a linear classifier.

Every forward accepts `tap`, a pure function (x, count) -> pytree called on the input of every
ReLU the network applies, with its multiplicity (how many ReLU modules see that tensor: every conv
edge leaving a node applies its own ReLU to the node); the forward then returns
(logits, sum of tap's results). Training-free proxies such as NASWOT read activation codes this way.

With `scan_cells=True` the N cells of a stage (one structure) run under `lax.scan` over their
stacked weights, so the program holds one cell per stage. For forward-only passes on XLA:CPU this
cut the C=16, N=5 supernet forward from 5.9 s to 1.9 s (batch 128) and its compile from 54 s to
8 s; but the *gradient* of the scanned cells ran 27x slower (N=2: 67 s vs 2.5 s), so forwards that
are differentiated keep the cells unrolled (the default). See benchmarks/BENCHMARKS.md. Weights
stay stored per cell either way, so checkpoints are unchanged.

The supernet's forward takes the architecture as a traced array in a typed container
(`jaxnas.spaces.arch`), so one compiled program serves every architecture of a kind:
  - `Choice(int32[6])`:    op ids, exactly the standalone network of that architecture;
  - `Weights(float[6, 5])`: op weights, sum_k w_k op_k(x) per edge (DARTS/SETN "joint" mode);
  - `Gates(float[6, 5])`:  0/1 masks, the mean of the selected ops per edge (multi-branch cells);
  - `InputGates(float[6, 5] or float[B, 6, 5])`: each op's input scaled by its gate (one set per
    example with the B axis), the ops' outputs summed: PGNAS's concrete-dropout gates; with a cell
    axis, float[3N, 6, 5] or float[B, 3N, 6, 5], each search cell reads its own gates (cells unrolled).
With `forward_only=True` (passes that are never differentiated: candidate evaluation, BN
recalibration, activation proxies) the supernet picks its own fastest exact formulation: cells
scanned, the backend's forward-only single-path formulation, unused ops pruned (`live_ops`).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxnas import backend
from jaxnas.nn.ops import Head, ReLUConvBN, ResNetBlock, Stem, avg_pool_3x3, batch_norm, conv2d
from jaxnas.spaces.arch import Choice, Gates, InputGates, Weights, check
from jaxnas.spaces.nb201 import cell as nb
from jaxnas.spaces.nb201.config import IMPLS

SINGLE_PATH_IMPLS = ("merged", "switch", "mask")  # traced formulations; IMPLS adds auto and eager
_KIND = {Choice: "choice", Weights: "weights", Gates: "gates", InputGates: "input_gates"}


class _Macro(nnx.Module):
    """Stem, 3 stages of `N` cells made by `make_cell(channels)`, ResNet reductions, head."""

    def __init__(self, C, N, num_classes, make_cell, *, rngs):
        self.C, self.N, self.num_classes = C, N, num_classes
        self.stem = Stem(3, C, rngs=rngs)
        cells, c = [], C
        for stage in range(3):
            if stage:
                cells.append(ResNetBlock(c, 2 * c, rngs=rngs))
                c *= 2
            cells.extend(make_cell(c) for _ in range(N))
        self.cells = nnx.List(cells)
        self.head = Head(c, num_classes, rngs=rngs)

    def _forward(self, x, train, cell_fn, tap=None, scan_cells=False):
        """stem, stages, head; `cell_fn(cell, h, record)` runs one cell."""
        record, total = _recorder(tap)
        h = self.stem(x, train)
        for group in self._stages():
            if isinstance(group, ResNetBlock):
                h = group(h, train, record)
            else:
                h, contrib = _run_cells(group, h, cell_fn, tap, scan_cells)
                if tap:
                    total.append(contrib)
        out = self.head(h, train, record)
        return out if tap is None else (out, _tree_sum(total))

    def _stages(self):
        """The reduction blocks, and the runs of cells between them as lists."""
        groups = []
        for cell in self.cells:
            if isinstance(cell, ResNetBlock):
                groups.append(cell)
            elif groups and isinstance(groups[-1], list):
                groups[-1].append(cell)
            else:
                groups.append([cell])
        return groups


def _tree_sum(trees):
    return jax.tree.map(lambda *xs: sum(xs), *trees)


def _recorder(tap):
    """(record, found): `record(x, count)` appends tap's result for one ReLU input to `found`."""
    found = []
    return ((lambda v, count=1.0: found.append(tap(v, count))) if tap else None), found


def _run_cells(cells, h, cell_fn, tap, scan):
    """Run identical cells in sequence, unrolled or (`scan`) with lax.scan over their stacked
    variables, writing the new variables (BatchNorm statistics) back. Returns (h, summed tap
    results or None)."""
    if not scan or len(cells) == 1:
        record, found = _recorder(tap)
        for cell in cells:
            h = cell_fn(cell, h, record)
        return h, (_tree_sum(found) if tap else None)
    graphdef, _ = nnx.split(cells[0])
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *[nnx.state(c) for c in cells])

    def body(h, state):
        cell = nnx.merge(graphdef, state)
        record, found = _recorder(tap)
        h = cell_fn(cell, h, record)
        return h, (nnx.state(cell), _tree_sum(found) if tap else jnp.zeros(()))

    h, (new, contribs) = jax.lax.scan(body, h, stacked, length=len(cells))
    for k, cell in enumerate(cells):
        nnx.update(cell, jax.tree.map(lambda x, k=k: x[k], new))
    return h, (jax.tree.map(lambda x: x.sum(0), contribs) if tap else None)


class InferCell(nnx.Module):
    """A cell of one fixed architecture; holds weights only for its conv edges."""

    def __init__(self, arch, C, *, rngs):
        self.arch = tuple(int(o) for o in arch)
        self.convs = nnx.Dict({
            str(e): ReLUConvBN(C, C, 1 if o == nb.CONV1 else 3, 1, 0 if o == nb.CONV1 else 1, rngs=rngs)
            for e, o in enumerate(self.arch) if o in (nb.CONV1, nb.CONV3)})

    def __call__(self, x, train: bool, tap=None):
        nodes = [x]
        for i in range(1, nb.NUM_NODES):
            if tap:  # every node, even one no conv reads (count 0), so each cell reports to the tap
                tap(nodes[i - 1], float(_conv_count(np.asarray(self.arch), i - 1, "choice")))
            terms = []
            for e, j in nb.NODE_INPUTS[i]:
                op = self.arch[e]
                if op == nb.SKIP:
                    terms.append(nodes[j])
                elif op == nb.POOL:
                    terms.append(avg_pool_3x3(nodes[j]))
                elif op in (nb.CONV1, nb.CONV3):
                    terms.append(self.convs[str(e)](nodes[j], train))
            nodes.append(sum(terms) if terms else jnp.zeros_like(x))
        return nodes[-1]


class NB201Network(_Macro):
    """The standalone NB201 network of one architecture (xautodl's TinyNetwork)."""

    def __init__(self, arch, C: int = 16, N: int = 5, num_classes: int = 10, *, rngs: nnx.Rngs):
        arch = nb.validate(arch)
        if arch.ndim != 1:
            raise ValueError(f"NB201Network takes one architecture of shape [6], got {arch.shape}")
        super().__init__(C, N, num_classes, lambda c: InferCell(arch, c, rngs=rngs), rngs=rngs)

    def __call__(self, x, train: bool = False, tap=None, scan_cells: bool = False):
        return self._forward(x, train, lambda cell, h, record: cell(h, train, record), tap, scan_cells)


class SearchEdge(nnx.Module):
    """All candidate ops of one edge; only the convolutions carry weights."""

    def __init__(self, C, affine, track, *, rngs):
        self.conv1 = ReLUConvBN(C, C, 1, 1, 0, affine, track, rngs=rngs)
        self.conv3 = ReLUConvBN(C, C, 3, 1, 1, affine, track, rngs=rngs)

    def all_ops(self, x, train):
        """The five op outputs (both BNs see the batch, as when every op runs in PyTorch)."""
        return (jnp.zeros_like(x), x, self.conv1(x, train), self.conv3(x, train), avg_pool_3x3(x))

    def input_gated(self, x, g, train):
        """sum_k op_k(g_k x) over skip, conv1, conv3, pool (`none` adds nothing): each op's input
        scaled by its gate, g float[5] or per example [B, 5] (PGNAS, the reference gates the input
        of each convolution: Conv2d_with_CD)."""
        def scaled(k):
            gk = g[..., k]
            return x * (gk if gk.ndim == 0 else gk.reshape((-1,) + (1,) * (x.ndim - 1)))
        return (scaled(nb.SKIP) + self.conv1(scaled(nb.CONV1), train) + self.conv3(scaled(nb.CONV3), train)
                + avg_pool_3x3(scaled(nb.POOL)))

    def single(self, x, op, train, impl, acc=None):
        """acc + the output of op `op` on x (acc None: the output alone)."""
        if impl == "switch":
            return self._single_switch(x, op, train, acc)
        y = self._single_mask(x, op, train) if impl == "mask" else self._single_merged(x, op, train)
        return y if acc is None else acc + y

    def _conv_bn(self, x, kernel, bn_params, padding, train):
        return batch_norm(conv2d(jax.nn.relu(x), kernel, 1, padding), *bn_params, train=train,
                          track=self.conv1.bn.track)

    def _stats(self):
        return self.conv1.bn.params()[2:], self.conv3.bn.params()[2:]

    def _commit_stats(self, op, new1, new3, old1, old3):
        """Keep the running statistics of the op that ran; the others stay as they were."""
        if not self.conv1.bn.track:
            return
        self.conv1.bn.set_stats(tuple(jnp.where(op == nb.CONV1, n, o) for n, o in zip(new1, old1)))
        self.conv3.bn.set_stats(tuple(jnp.where(op == nb.CONV3, n, o) for n, o in zip(new3, old3)))

    def _single_merged(self, x, op, train):
        """One convolution per edge: nor_conv_1x1 is a 3x3 kernel with a zero ring (exact)."""
        is3 = op == nb.CONV3
        k1 = jnp.pad(self.conv1.conv.kernel[...], ((1, 1), (1, 1), (0, 0), (0, 0)))
        kernel = jnp.where(is3, self.conv3.conv.kernel[...], k1)
        bn = tuple(None if a is None else jnp.where(is3, b, a)
                   for a, b in zip(self.conv1.bn.params(), self.conv3.bn.params()))
        y, stats = self._conv_bn(x, kernel, bn, 1, train)
        self._commit_stats(op, stats, stats, *self._stats())
        is_conv = is3 | (op == nb.CONV1)
        return (jnp.where(is_conv, y, 0.0) + jnp.where(op == nb.SKIP, x, 0.0)
                + jnp.where(op == nb.POOL, avg_pool_3x3(x), 0.0))

    def _single_switch(self, x, op, train, acc=None):
        """lax.switch per edge: only the chosen op runs (fast on GPU; slow conv grads on XLA:CPU).

        The node sum happens inside the branch (acc + op(x)), so XLA fuses it into the op's last
        pass and `none` costs nothing: NASWOT scoring on 2 CPU cores ran ~5 % faster than with
        the sum outside (benchmarks/BENCHMARKS.md, section 5)."""
        p1, p3 = self.conv1.bn.params(), self.conv3.bn.params()
        k1, k3 = self.conv1.conv.kernel[...], self.conv3.conv.kernel[...]
        s1, s3 = p1[2:], p3[2:]
        # acc None: no zeros operand (it would be materialised for every call), `none` makes them
        plus = (lambda a, y: y) if acc is None else (lambda a, y: a + y)
        nothing = (lambda a, x: jnp.zeros_like(x)) if acc is None else (lambda a, x: a)

        def conv1(a, x):
            y, s = self._conv_bn(x, k1, p1, 0, train)
            return plus(a, y), s, s3

        def conv3(a, x):
            y, s = self._conv_bn(x, k3, p3, 1, train)
            return plus(a, y), s1, s

        branches = [lambda a, x: (nothing(a, x), s1, s3), lambda a, x: (plus(a, x), s1, s3), conv1, conv3,
                    lambda a, x: (plus(a, avg_pool_3x3(x)), s1, s3)]
        out, new1, new3 = jax.lax.switch(op, branches, acc, x)
        self._commit_stats(op, new1, new3, s1, s3)
        return out

    def _single_mask(self, x, op, train):
        """Every op computed, one-hot weighted (a reference formulation; the costliest)."""
        old1, old3 = self._stats()
        outs = self.all_ops(x, train)
        self._commit_stats(op, *self._stats(), old1, old3)
        mask = jax.nn.one_hot(op, nb.NUM_OPS, dtype=x.dtype)
        return sum(m * o for m, o in zip(mask, outs))


def _conv_count(arch, node, kind):
    """How many conv ops (each with its own ReLU) read `node`: conv edges leaving it."""
    out = [e for e, _ in nb.NODE_OUTPUTS[node]]
    if kind == "choice":
        return sum(((arch[e] == nb.CONV1) | (arch[e] == nb.CONV3)).astype(jnp.float32) for e in out)
    # weights / gates: every op with a non-zero weight runs
    return sum((arch[e, nb.CONV1] != 0).astype(jnp.float32) + (arch[e, nb.CONV3] != 0).astype(jnp.float32)
               for e in out)


PRUNE = (False, True, "unused", "zero")


def live_ops(arch, tapped: bool, zero_inputs: bool = False):
    """int32[6]: `arch` (single-path op ids) with `none` on every edge whose output nothing uses.

    An edge's output is used when its target node is: the cell's output node always, another node
    when a non-`none` edge leaving it feeds a used node or, if the ReLU inputs are `tapped`, when a
    conv edge reads it (NASWOT counts that ReLU even if the conv's result goes nowhere). Pruning
    these changes no output and no tapped value; over all 15,625 architectures it skips 7.6 % of
    the convolutions.

    With `zero_inputs`, edges leaving an all-zero node (one whose every input edge is `none` or
    leaves an all-zero node) become `none` too: skip, pooling and none of zeros are zeros, and so
    is ReLU -> conv -> BatchNorm when BatchNorm normalises with batch statistics and its bias is
    zero (BN of a constant is its bias), as in a freshly initialised network in training mode:
    another ~7 % of the convolutions. Traceable (`arch` may be a traced array).
    """
    zero = {0: jnp.bool_(False)}
    for i in range(1, nb.NUM_NODES):
        zero[i] = functools.reduce(jnp.logical_and, [(arch[e] == nb.NONE) | zero[src]
                                                      for e, src in nb.NODE_INPUTS[i]])
    used = {nb.NUM_NODES - 1: jnp.bool_(True)}
    for j in range(nb.NUM_NODES - 2, 0, -1):
        feeds = [(arch[e] != nb.NONE) & used[to] for e, to in nb.NODE_OUTPUTS[j]]
        used[j] = functools.reduce(jnp.logical_or, feeds) | (tapped & (_conv_count(arch, j, "choice") > 0))
    live = [used[to] & ~(zero[src] & zero_inputs) for to, src in nb.EDGES]
    return jnp.stack([jnp.where(ok, arch[e], nb.NONE) for e, ok in enumerate(live)])


class SearchCell(nnx.Module):
    """A cell holding every op on every edge; the architecture is an argument of the forward."""

    def __init__(self, C, affine, track, *, rngs):
        self.edges = nnx.List([SearchEdge(C, affine, track, rngs=rngs) for _ in nb.EDGES])

    def __call__(self, x, arch, kind, train, impl, tap=None, prune=False):
        """`arch`: the container's array (input gates: [6, 5] or [6, B, 5]); `kind`: "choice",
        "weights", "gates" or "input_gates"."""
        nodes = [x]
        ops = live_ops(arch, tap is not None, zero_inputs=prune == "zero") if prune else arch
        for i in range(1, nb.NUM_NODES):
            if tap:  # the tap counts every conv edge of `arch`, pruned or not
                tap(nodes[i - 1], _conv_count(arch, i - 1, kind))
            acc = None if kind == "choice" else 0.0
            for e, j in nb.NODE_INPUTS[i]:
                edge = self.edges[e]
                if kind == "choice":
                    acc = edge.single(nodes[j], ops[e], train, impl, acc)
                elif kind == "input_gates":
                    acc = acc + edge.input_gated(nodes[j], arch[e], train)
                else:
                    outs = edge.all_ops(nodes[j], train)
                    w = arch[e]
                    if kind == "gates":
                        w = w / jnp.maximum(w.sum(), 1.0)
                    acc = acc + sum(w[k] * outs[k] for k in range(nb.NUM_OPS))
            nodes.append(acc)
        return nodes[-1]


class NB201SuperNet(_Macro):
    """The NB201 supernet (xautodl's TinyNetworkSETN search model) with array architectures.

    `affine` and `track_running_stats` apply to the search cells' BatchNorms, as in the reference
    (SETN searches with affine=False); stem, ResNet blocks and head always use both.
    """

    def __init__(self, C: int = 16, N: int = 5, num_classes: int = 10, affine: bool = False,
                 track_running_stats: bool = True, single_path_impl: str = "merged", *, rngs: nnx.Rngs):
        """`single_path_impl`: one of `config.IMPLS`, resolved per pass by `jaxnas.backend`
        (differentiated passes: `traced_impl`; forward-only ones: `resolve_impl(forward_only=True)`)."""
        if single_path_impl not in IMPLS:
            raise ValueError(f"single_path_impl must be one of {', '.join(IMPLS)}, got {single_path_impl!r}")
        self.single_path_impl, self.affine = single_path_impl, affine
        super().__init__(C, N, num_classes, lambda c: SearchCell(c, affine, track_running_stats, rngs=rngs),
                         rngs=rngs)

    def __call__(self, x, arch, train: bool = True, tap=None, *, forward_only: bool = False,
                 single_path_impl=None, scan_cells=None, prune=None):
        """Logits of `arch` (a `Choice`, `Weights` or `Gates` container) on images x.

        `forward_only`: a pass that is never differentiated; the supernet then scans its cells,
        uses the backend's forward-only single-path formulation and prunes what cannot change the
        output: for a `Choice`, ops whose output nothing uses, and with batch-statistics BatchNorm
        (`train`) in cells without BN bias also the convs of all-zero nodes (`live_ops`). The
        keywords override single choices: `prune` True or "unused" skips the unused ops, "zero" also
        the ops of all-zero inputs, exact only with batch statistics and zero BN biases as in a
        fresh network in training mode. Outputs and tapped values are unchanged by pruning, but the
        BatchNorm statistics of skipped convolutions are not updated, so training passes leave it off.
        """
        kind = _KIND[type(check(arch))]
        a = arch.value
        want = (nb.NUM_EDGES,) if kind == "choice" else (nb.NUM_EDGES, nb.NUM_OPS)
        n_cells = 3 * self.N
        if kind == "input_gates" and a.ndim == 3 and a.shape[0] == x.shape[0] == n_cells:
            raise ValueError(f"InputGates of shape {tuple(a.shape)} with a batch of {n_cells}: gates per "
                             "example or per cell? Use another batch size")
        if kind == "input_gates" and a.ndim in (3, 4) and a.shape[-3] == n_cells and (
                a.ndim == 3 or a.shape[0] == x.shape[0]):  # gates per search cell: [(B,) 3N, 6, 5]
            if tap is not None:
                raise ValueError("tap needs one architecture for every cell, not gates per cell")
            if tuple(a.shape[-2:]) != want:
                raise ValueError(f"InputGates per cell takes gates of shape [(B,) {n_cells}, 6, 5], got "
                                 f"{tuple(a.shape)}")
            per_cell = iter([a[c] if a.ndim == 3 else jnp.moveaxis(a[:, c], 0, 1) for c in range(n_cells)])
            return self._forward(x, train, lambda cell, h,
                                 record: cell(h, next(per_cell), kind, train, None, record),
                                 None, False)
        if kind == "input_gates" and a.ndim == 3 and a.shape[0] == x.shape[0]:  # one set per example
            if tap is not None:
                raise ValueError("tap needs one architecture for the whole batch, not gates per example")
            want, a = (x.shape[0],) + want, jnp.moveaxis(a, 0, 1)  # [6, B, 5]: a[e] is edge e's gates
            if tuple(a.shape[::2]) != (nb.NUM_EDGES, nb.NUM_OPS):
                raise ValueError(f"InputGates takes gates of shape {want}, got {tuple(arch.value.shape)}")
        elif tuple(a.shape) != want:
            raise ValueError(f"{type(arch).__name__} takes an architecture of shape {want}, got "
                             f"{tuple(a.shape)}")
        if prune is None:
            prune = (("zero" if train and not self.affine else True) if forward_only and kind == "choice"
                     else False)
        if prune not in PRUNE:
            raise ValueError(f"prune must be one of {PRUNE}, got {prune!r}")
        if prune and kind != "choice":
            raise ValueError(f"prune applies to a Choice only, got {type(arch).__name__}")
        impl = single_path_impl or self.single_path_impl
        if impl not in IMPLS:
            raise ValueError(f"single_path_impl must be one of {', '.join(IMPLS)}, got {impl!r}")
        impl = backend.resolve_impl(impl, forward_only=True) if forward_only else backend.traced_impl(impl)
        scan = forward_only if scan_cells is None else scan_cells
        return self._forward(x, train, lambda cell, h, record: cell(h, a, kind, train, impl, record, prune),
                             tap, scan)

    def blocks(self, arch, train: bool = True, *, single_path_impl=None):
        """The network before its head as a chain of functions h -> h': the stem, then every cell
        and ResNet block in order (`self.head(h, train)` would give the logits), for proxies that
        read or differentiate each block's output on its own (AZ-NAS). `arch` a `Choice` (the cells
        run unrolled and unpruned in the differentiable single-path formulation, `traced_impl`) or
        one mixed cell for all cells, `Weights` / `Gates` [6, 5]."""
        a = check(arch, (Choice, Weights, Gates)).value
        want = (nb.NUM_EDGES,) if isinstance(arch, Choice) else (nb.NUM_EDGES, nb.NUM_OPS)
        if tuple(a.shape) != want:
            raise ValueError(f"blocks takes one architecture of shape {list(want)}, got {tuple(a.shape)}")
        impl = backend.traced_impl(single_path_impl or self.single_path_impl)
        fns = [functools.partial(self.stem, train=train)]
        for cell in self.cells:
            fns.append(functools.partial(cell, train=train) if isinstance(cell, ResNetBlock)
                       else functools.partial(cell, arch=a, kind=_KIND[type(arch)], train=train, impl=impl))
        return fns


def extract(supernet: NB201SuperNet, arch) -> NB201Network:
    """The standalone network of `arch` carrying the supernet's shared weights and statistics.

    Search cells without affine BN give the standalone network scale 1 and bias 0, and without
    running statistics mean 0 and variance 1, so its training-mode forward equals the supernet's.
    """
    arch = nb.validate(arch)
    net = NB201Network(arch, supernet.C, supernet.N, supernet.num_classes, rngs=nnx.Rngs(0))
    nnx.update(net.stem, nnx.state(supernet.stem))
    nnx.update(net.head, nnx.state(supernet.head))
    for cell, scell in zip(net.cells, supernet.cells):
        if isinstance(cell, ResNetBlock):
            nnx.update(cell, nnx.state(scell))
            continue
        for key, conv in cell.convs.items():
            e = int(key)
            src = scell.edges[e].conv1 if arch[e] == nb.CONV1 else scell.edges[e].conv3
            conv.conv.kernel[...] = src.conv.kernel[...]
            scale, bias, mean, var = src.bn.params()
            if scale is not None:
                conv.bn.scale[...], conv.bn.bias[...] = scale, bias
            if mean is not None:
                conv.bn.mean[...], conv.bn.var[...] = mean, var
    return net


def used_params(params, arch):
    """Bool tree marking the supernet parameters a single-path `arch` (int32[6]) uses, or a mixed
    cell (`Gates`, mask [6, 5]: every op with a non-zero gate).

    The conv1 / conv3 weights of edge e take part only when arch[e] selects that op; everything
    outside the search cells always does. Used to skip unsampled ops in the optimizer.
    """
    mask = arch.value if isinstance(arch, Gates) else None

    def mark(path, _):
        keys = [getattr(k, "key", None) for k in path]
        if "edges" in keys:
            e = keys[keys.index("edges") + 1]
            op = nb.CONV1 if keys[keys.index("edges") + 2] == "conv1" else nb.CONV3
            return mask[e, op].astype(bool) if mask is not None else arch[e] == op
        return jnp.bool_(True)

    return jax.tree_util.tree_map_with_path(mark, params)
