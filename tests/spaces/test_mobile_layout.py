"""NSE's mobile skeleton and cost tables against the reference's own counts (orashi/NSE_NAS@939edf2,
utils/macc.py applied by the ops' constructors; figures obtained by running the reference's classes,
docs/nse-reference.md sections 1 and 7)."""
import re

import numpy as np
import pytest

from jaxnas.spaces.mobile.config import Mobile
from jaxnas.spaces.mobile.layout import POOL, Layout, make_divisible

# NSENet27 (su:1366-1376): the ops of each of its 18 cells (alloc [1, 2, 2, 2, 2, 3], scale 1.04)
NSENET27 = [[0], [6], [3], [0], [16], [3], [9], [11, 17], [9, 2], [12], [1, 6], [9, 12], [9], [17, 14], [21],
            [3], [13], [19, 3, 14]]


def test_the_imagenet_skeleton_is_the_references():
    lay = Layout.of(Mobile())
    cells = lay.cells
    assert len(cells) == 22 and len(POOL) == 27
    assert [i for i, c in enumerate(cells) if not c.identity] == [1, 5, 9, 13, 17, 21]
    assert [(c.kind, c.cin, c.cout, c.stride, c.size) for c in cells if not c.identity] == [
        ("R", 16, 24, 2, 112), ("R", 24, 40, 2, 56), ("R", 40, 80, 2, 28), ("E", 80, 96, 1, 14),
        ("R", 96, 192, 2, 14), ("E", 192, 320, 1, 7)]
    assert cells[-1].out_size == 7
    assert POOL[2] == ("mb", 3, 1, 3) and POOL[9] == ("mb", 5, 1, 1) and POOL[26] == ("rec", 7, 4, 1)


def test_costs_equal_the_reference_counter():
    lay = Layout.of(Mobile())
    macs, params = lay.tables
    assert lay.back() == (22_500_352, 1_353_144)  # stem 5.419 M + head 16.056 M + pool + fc
    assert (macs[0, 0], macs[1, 20], macs[21, 26]) == (8_228_864, 62_920_704, 423_886_848)
    assert params.sum() + lay.back()[1] == 157_820_888  # every op of every cell: the whole supernet
    nse = Layout.of(Mobile(alloc=(1, 2, 2, 2, 2, 3), scale=1.04))
    assert nse.widths == (16, 24, 40, 80, 96, 200, 336)
    gates = np.zeros((len(nse.cells), len(POOL)), bool)
    for c, ops in enumerate(NSENET27):
        gates[c, ops] = True
    m, p = nse.tables
    assert (m[gates].sum() + nse.back()[0], p[gates].sum() + nse.back()[1]) == (326_326_224, 4_570_464)


def test_the_cifar_variant_keeps_the_plan_at_32_pixels():
    lay = Layout.of(Mobile(resolution=32))
    sizes = [(c.kind, c.size, c.stride) for c in lay.cells if not c.identity]
    assert sizes == [("R", 32, 1), ("R", 32, 2), ("R", 16, 2), ("E", 8, 1), ("R", 8, 2), ("E", 4, 1)]
    assert lay.cells[-1].out_size == 4
    # the head counted at the real 4x4, the stem at 32x32 stride 1
    assert lay.back()[0] == 32 * 32 * 16 * 27 + 16 * 320 * 1024 + 1024 + 1024 * 10


def test_make_divisible_is_the_references_rule():
    assert [make_divisible(v) for v in (3, 24 * 1.04, 192 * 1.04, 320 * 1.04, 100)] == [8, 24, 200, 336, 104]


@pytest.mark.parametrize("field, value, says", [
    ("alloc", (1, 3, 3), "6 counts"), ("channels", (16, 24), "7 widths"),
    ("resolution", 64, "224 (ImageNet) or 32"), ("scale", 0.0, "scale")])
def test_bad_sizes_get_a_one_line_error(field, value, says):
    with pytest.raises(ValueError, match=re.escape(says)):
        Mobile(**{field: value}).check()
