"""The geometry of NSE's mobile space: the cell plan, each cell's shapes, the 27-operator pool, and
each (cell, operator)'s multiply-adds and parameters. Plain Python and numpy (the cost model, the
sampler and the networks read it).

Follows orashi/NSE_NAS@939edf2 utils/supernet_utils.py (`su`): the `NER` plan over `alloc_space`
(su:1307-1312, 872-893), the channel rule (su:56-70, 861), the pool `MACMBCell` (su:468-495) of
`LinearBottleneck` (su:337-404) and `Rec` (su:117-194) ops, and the counter utils/macc.py as the
ops' constructors apply it. The stem and head are counted from the real shapes, where the
reference hard-codes a 224 input (su:1337-1339, 1348-1350; docs/nse-reference.md D15).
"""
from __future__ import annotations

import dataclasses
import functools

import numpy as np

# the pool in the reference's construction order (su:468-495): MBConv with kernel k in {3..11} and
# expansion t in {1, 3, 6}, kernel 3 also dilated 2 and 3 (innermost); then Rec (1xk, kx1) with
# k in {5, 7} and t in {1, 2, 4}. (kind, kernel, expansion, dilation)
POOL = tuple([("mb", 3, t, d) for t in (1, 3, 6) for d in (1, 2, 3)]
             + [("mb", k, t, 1) for k in (5, 7, 9, 11) for t in (1, 3, 6)]
             + [("rec", k, t, 1) for k in (5, 7) for t in (1, 2, 4)])


def op_name(op) -> str:
    """'mb5t3' (MBConv kernel 5, expansion 3), 'mb3t6d2' (dilation 2), 'rec7t4' (1x7 then 7x1)."""
    kind, k, t, d = op
    return f"{kind}{k}t{t}" + (f"d{d}" if d > 1 else "")


NAMES = tuple(op_name(op) for op in POOL)


def pool_of(names) -> tuple:
    """The operators called `names` (`mobile.ops`), in the reference's pool order; () is the whole pool."""
    if not names:
        return POOL
    unknown = [n for n in names if n not in NAMES]
    if unknown:
        raise ValueError(f"mobile.ops: unknown operator {unknown[0]!r}; the pool: {', '.join(NAMES)}")
    if len(set(names)) != len(names):
        raise ValueError(f"mobile.ops lists an operator twice: {','.join(names)}")
    return tuple(op for op in POOL if op_name(op) in names)


def out_side(size: int, stride: int) -> int:
    """A conv's output side (PyTorch's, with the pool ops' "same" padding): ceil(size / stride)."""
    return (size - 1 + stride) // stride


def make_divisible(v: float, divisor: int = 8) -> int:
    """su:56-70: v rounded to a multiple of `divisor` (at least it), never below 90 % of v."""
    out = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return out + divisor if out < 0.9 * v else out


@dataclasses.dataclass(frozen=True)
class Cell:
    kind: str     # N, R or E
    cin: int
    cout: int
    stride: int
    size: int     # input side

    @property
    def identity(self) -> bool:
        """The cell adds its input (su:509-524): same channels, stride 1."""
        return self.kind == "N"

    @property
    def out_size(self) -> int:
        return out_side(self.size, self.stride)


def op_cost(op, cin, cout, stride, size) -> tuple[int, int]:
    """(multiply-adds, parameters) of one pool op at input side `size` (utils/macc.py: every tap
    counts, dilation and padding ignored; parameters: conv weights and BN's scale and bias)."""
    kind, k, t, _ = op
    e, s_o = cin * t, out_side(size, stride)
    if kind == "mb":  # 1x1 expand, kxk depthwise (stride), 1x1 project; a BN after each
        macs = e * size * size * cin + e * s_o * s_o * k * k + cout * s_o * s_o * e
        params = cin * e + 2 * e + e * k * k + 2 * e + e * cout + 2 * cout
    else:  # 1x1 expand, 1xk (stride along the width), kx1 (stride along the height), 1x1 project
        macs = e * size * size * cin + e * size * s_o * e * k + e * s_o * s_o * e * k + cout * s_o * s_o * e
        params = cin * e + 2 * e + 2 * (e * e * k + 2 * e) + e * cout + 2 * cout
    return macs, params


@dataclasses.dataclass(frozen=True)
class Layout:
    """The skeleton of one `mobile` configuration."""
    alloc: tuple
    channels: tuple
    scale: float
    head: int
    resolution: int
    pool: tuple = POOL  # the operators a cell chooses among (`mobile.ops`)

    @classmethod
    def of(cls, section) -> Layout:
        return cls(tuple(section.alloc), tuple(section.channels), float(section.scale), section.head,
                   section.resolution, pool_of(tuple(section.ops)))

    @property
    def cifar(self) -> bool:
        return self.resolution == 32

    @functools.cached_property
    def widths(self) -> tuple:
        """The stem's channels (never scaled), then each stage's (su:861)."""
        return (self.channels[0],) + tuple(make_divisible(c * self.scale) for c in self.channels[1:])

    @property
    def stem_stride(self) -> int:
        return 1 if self.cifar else 2

    @property
    def stem_side(self) -> int:
        """The stem's output side, the first cell's input."""
        return out_side(self.resolution, self.stem_stride)

    @functools.cached_property
    def cells(self) -> tuple:
        """N x a0, R, N x a1, R, N x a2, R, N x a3, E, N x a4, R, N x a5, E (su:1307-1312); the CIFAR
        variant runs the first R at stride 1."""
        size, cells, stage = self.stem_side, [], 0
        for i, n in enumerate(self.alloc):
            for _ in range(n):
                cells.append(Cell("N", self.widths[stage], self.widths[stage], 1, size))
            kind = "E" if i in (3, 5) else "R"
            stride = 1 if kind == "E" or (self.cifar and i == 0) else 2
            cells.append(Cell(kind, self.widths[stage], self.widths[stage + 1], stride, size))
            size = cells[-1].out_size
            stage += 1
        return tuple(cells)

    @property
    def identity(self) -> np.ndarray:
        """bool[cells]: which cells add their input (and may select no op)."""
        return np.array([c.identity for c in self.cells])

    @functools.cached_property
    def tables(self) -> tuple[np.ndarray, np.ndarray]:
        """(multiply-adds, parameters) of every (cell, pool op), int64[cells, pool]."""
        costs = np.array([[op_cost(op, c.cin, c.cout, c.stride, c.size) for op in self.pool]
                          for c in self.cells], np.int64)
        return costs[..., 0], costs[..., 1]

    @property
    def num_classes(self) -> int:
        """The classifier's outputs by default: ImageNet's 1000, CIFAR-10's 10."""
        return 10 if self.cifar else 1000

    def back(self, num_classes: int | None = None) -> tuple[int, int]:
        """(multiply-adds, parameters) outside the cells: the 3x3 stem conv + BN, the head's 1x1 conv
        (no BN, no bias), the global average pool (its output's size, macc.py) and the classifier."""
        num_classes = num_classes or self.num_classes
        c0, last, s = self.widths[0], self.widths[-1], self.stem_side
        final = self.cells[-1].out_size
        macs = s * s * c0 * 3 * 9 + final * final * last * self.head + self.head + self.head * num_classes
        params = 3 * 9 * c0 + 2 * c0 + last * self.head + self.head * num_classes + num_classes
        return macs, params
