"""The geometry of SMASH's memory-bank network, derived from the `smash` section's sizes.

Follows `SMASH.__init__` and `sample_architecture` (ajbrock/SMASH, SMASH.py): three blocks whose
widths come from a wide-ResNet budget; in block b the memory is split into banks of `bs * N`
channels (bs, the bank size, drawn per block), the block input fills the first banks, and each layer
spends `len(read) * bs / depth_compression` of the block's read budget in "slices" (the columns of
the HyperNet's grid). Plain Python and numpy: the sampler, the validator and the cost read it.
"""
from __future__ import annotations

import dataclasses
import functools

BLOCKS = 3
# the reference's op configurations (SMASH.py `options`): which of a layer's 4 convs are active;
# w1(w0(x)) + w3(w2(x)) in general (layers.py SMASHLayer)
OPTIONS = ((1, 0, 0, 0), (1, 0, 1, 0), (1, 1, 0, 0), (1, 1, 1, 0), (1, 1, 1, 1))
OPTION_PROBS = {"single": (1.0, 0, 0, 0, 0), "var": (0.05, 0.1, 0.15, 0.25, 0.45), "big": (0, 0, 0, 0, 1.0)}
CONVS = 4
MIN_BUDGET_FRACTION = 0.3  # budgets ~ U(0.3, max_budget) of a block's full read budget (SMASH.py)


def _divisors(n):
    return [d for d in range(1, n + 1) if n % d == 0]


@dataclasses.dataclass(frozen=True)
class Layout:
    """Sizes of one configuration; per-block tuples are indexed by block."""
    depth: int
    width: int
    N: int
    N_max: int
    bottleneck: int
    max_bottleneck: int
    dc: int              # depth_compression
    max_kernel: int
    max_groups: int
    ops: str
    max_layers: int

    @classmethod
    def of(cls, section) -> Layout:
        return _layout(section.depth, section.width, section.N, section.N_max, section.bottleneck,
                       section.max_bottleneck, section.depth_compression, section.max_kernel,
                       section.max_groups, section.ops, section.max_layers)

    @property
    def k(self) -> int:
        """Most units of a layer, in N's (G <= k)."""
        return self.N_max // self.N

    @functools.cached_property
    def in_channels(self) -> tuple:
        """Channels entering each block (stem output, then the transitions')."""
        base, c0 = 2 * self.N, 2 * self.N * self.width
        in1 = (3 * c0) // 2 // base * base
        in2 = (in1 + 2 * c0) // 2 // base * base
        return c0, in1, in2

    @functools.cached_property
    def widths(self) -> tuple:
        """Most channels of each block's memory (SMASH.py: the last block's is 4 base width,
        not its input + 2 base width)."""
        c0 = 2 * self.N * self.width
        return 3 * c0, self.in_channels[1] + 2 * c0, 4 * c0

    @functools.cached_property
    def budget_channels(self) -> tuple:
        """`nch_list`: each block's read budget in channels (input + depth layers of the WRN)."""
        c0 = 2 * self.N * self.width
        return tuple(i + self.depth * m * c0 for i, m in zip(self.in_channels, (1, 2, 4)))

    @property
    def budget_slices(self) -> tuple:
        """Each block's full read budget in slices of N * dc channels."""
        return tuple(n // (self.N * self.dc) for n in self.budget_channels)

    @property
    def columns(self) -> int:
        """S: the trailing size of the reference's z and c (one column per slice of all blocks)."""
        return sum(self.budget_channels) // self.N // self.dc

    @property
    def max_banks(self) -> int:
        """Banks of N channels in the widest block: the architecture arrays' bank axis."""
        return max(self.widths) // self.N

    @property
    def groups(self) -> tuple:
        """The group counts a conv may use: divisors of N up to max_groups (`factors`)."""
        d = _divisors(self.N)
        return tuple(d[:d.index(self.max_groups) + 1])

    @property
    def kernels(self) -> tuple:
        return tuple(range(3, self.max_kernel + 1, 2))

    @property
    def extent(self) -> int:
        """The widest dilated kernel, (k - 1) d + 1, over the kernels and the dilations they allow
        (d <= 4 - (k - 1) // 2, SMASH.py's rule): the dense kernel the network builds each conv in."""
        return max((k - 1) * max_dilation(k) + 1 for k in self.kernels)

    def layer_slots(self, block: int) -> int:
        """Most layers the block can hold: every layer spends at least the smallest read of its bank
        size in slices, and a valid block spends at most its full budget (the network runs only these
        slots of the `max_layers`)."""
        least = min(self.min_budget(bs) for bs in self.bank_sizes(block))
        return min(self.max_layers, self.budget_slices[block] // least)

    def input_banks(self, block: int, bs: int) -> int:
        """Banks the block input fills (its channels beyond them are dropped, as in SMASH.py)."""
        return self.in_channels[block] // (bs * self.N)

    def banks(self, block: int, bs: int) -> int:
        """Most banks of the block at bank size bs."""
        return self.widths[block] // (bs * self.N)

    def min_budget(self, bs: int) -> int:
        """Slices the smallest read spends (`min_budget_per_op`)."""
        return bs if bs % self.dc else bs // self.dc

    def min_reads(self, bs: int) -> int:
        """Reads come in multiples of this (`min_reads_per_op`): every read spends whole slices."""
        return self.min_budget(bs) * self.dc // bs

    def bank_sizes(self, block: int) -> tuple:
        """The bank sizes the block allows (`sample_budgets`), less those whose input fills no bank,
        where the reference's sampler fails (np.random.choice of an empty list)."""
        return tuple(bs for bs in range(1, self.k + 1)
                     if not self.input_banks(block, bs) < self.dc * (bs % self.dc > 0)
                     and self.input_banks(block, bs) >= self.min_reads(bs))


def max_dilation(kernel: int) -> int:
    """The largest dilation the sampler draws for a kernel side (SMASH.py: randint(1, 5 - (k - 1) // 2))."""
    return 4 - (kernel - 1) // 2


@functools.cache
def _layout(*args) -> Layout:
    return Layout(*args)
