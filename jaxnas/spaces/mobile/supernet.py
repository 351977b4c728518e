"""NSE's weight-sharing supernet on the mobile space: every pool operator of every cell, of which a
call runs a static subset (orashi/NSE_NAS@939edf2 utils/supernet_utils.py `MACSuperNet` su:845-1260,
its forward su:1185-1249; docs/nse-reference.md sections 3-4).

    logits = supernet(x, Gates(gates), train, ops=ops)

`ops`: per cell a static tuple of pool ids, the operators that run (NSE: the round's active subset,
at most K = 5 a cell; None: the whole pool, 27 a cell, for callers that know no subset). `gates`:
[cells, pool] 0/1 (or any weights), read only at `ops`; a cell's output is the multi-branch mean
(`network.cell_output`): (identity x + sum_j g_j op_j(x)) / (identity + sum_j g_j), an empty
identity cell passes x on. An operator whose gate is 0 runs but reaches neither the output nor its
BN running statistics (the reference runs only the selected ones).

The architecture step's pair estimator (`jaxnas.search.pairs`): `Gates({"s": s, "u": u, "q": q})`,
two gate patterns [cells, pool] and their pair-renormalised probabilities q [cells, 2]; each cell
outputs y_s (q_s + 1 - sg q_s) + sg(y_u) (q_u - sg q_u), y_s and y_u the means under s and u from
the same operator outputs (su:1229-1238). BN statistics move for the operators in s or u (once).

Why a static subset: a traced choice among 27 operators per cell (switch / cond) runs convolution
gradients 10-20x slower on XLA:CPU (BENCHMARKS.md 15) and compiles every branch; masking all 27
runs 27 of them. With the round's subset static, the method compiles one program per round.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jaxnas.nn.functional import straight_through
from jaxnas.spaces.arch import Choice, Gates, check
from jaxnas.spaces.mobile.layout import Layout
from jaxnas.spaces.mobile.network import ConvBN, Head, cell_output, make_op


class MobileSupernet(nnx.Module):
    """Every pool operator of every cell, with the stem and head of the standalone network."""

    def __init__(self, layout: Layout, num_classes: int, *, rngs: nnx.Rngs):
        self.layout = layout
        self.ops = None  # the default `ops` of a call (static: part of the graph, `with_ops`)
        self.stem = ConvBN(3, layout.widths[0], (3, 3), (layout.stem_stride,) * 2, (1, 1), rngs=rngs)
        self.cells = nnx.List([nnx.List([make_op(op, c.cin, c.cout, c.stride, rngs=rngs)
                                         for op in layout.pool]) for c in layout.cells])
        self.head = Head(layout.widths[-1], layout.head, num_classes, rngs=rngs)

    def __call__(self, x, arch, train: bool = True, *, forward_only: bool = False, ops=None):
        value = check(arch, (Gates, Choice)).value
        pair = isinstance(value, dict)
        ops = self.ops if ops is None else ops
        ops = tuple(tuple(range(len(self.layout.pool))) for _ in self.layout.cells) if ops is None else ops
        h = self.stem(x, train)
        for c, (cell, ids) in enumerate(zip(self.layout.cells, ops)):
            if pair:
                s, u = (jnp.asarray(value[k], jnp.float32)[c] for k in ("s", "u"))
                on = [(s[j] != 0) | (u[j] != 0) for j in ids]
            else:
                g = jnp.asarray(value, jnp.float32)[c]
                on = [g[j] != 0 for j in ids]
            outs = [self._run(self.cells[c][j], h, train, moves) for j, moves in zip(ids, on)]
            if pair:
                y_s = cell_output(h, outs, cell.identity, [s[j] for j in ids])
                y_u = jax.lax.stop_gradient(cell_output(h, outs, cell.identity, [u[j] for j in ids]))
                q = value["q"][c]
                h = straight_through(y_s, y_u, q[0], q[1])
            else:
                h = cell_output(h, outs, cell.identity, [g[j] for j in ids])
        return self.head(h)

    def with_ops(self, ops) -> MobileSupernet:
        """This network with `ops` (per cell a tuple of pool ids) as its calls' default: its graph,
        split, is a static argument that compiles one program per operator set (NSE: per round)."""
        self.ops = tuple(tuple(int(i) for i in ids) for ids in ops)
        return self

    @staticmethod
    def _run(op, h, train: bool, moves):
        """op(h); in training, its BN running statistics move only when `moves`."""
        if not train:
            return op(h, train)
        before = nnx.as_pure(nnx.state(op, nnx.BatchStat))
        y = op(h, train)
        after = nnx.as_pure(nnx.state(op, nnx.BatchStat))
        nnx.update(op, jax.tree.map(lambda a, b: jnp.where(moves, a, b), after, before))
        return y
