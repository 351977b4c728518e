"""jaxnas.spaces.nb201: strings, masks, codes, the shipped NB201 index order, sampling, errors."""
import csv

import jax
import numpy as np
import pytest

from jaxnas.spaces import nb201

ALL_CONV3 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"


@pytest.fixture(scope="module")
def table_strings(nb201_table_path):
    with open(nb201_table_path, newline="") as f:
        rows = list(csv.DictReader(f))
    return [r["ArchitectureString"] for r in rows]


def _all_codes():
    return nb201.decode(np.arange(nb201.NUM_ARCHS))


def test_string_round_trip_all():
    archs = _all_codes()
    strings = [nb201.to_string(a) for a in archs]
    assert len(set(strings)) == nb201.NUM_ARCHS
    back = np.stack([nb201.from_string(s) for s in strings])
    np.testing.assert_array_equal(back, archs)
    assert back.dtype == np.int32


def test_string_format_and_edge_order():
    assert nb201.to_string([3] * 6) == ALL_CONV3
    # edge e in string order carries op e % 5: node1 <- 0 ; node2 <- 0,1 ; node3 <- 0,1,2
    s = nb201.to_string([0, 1, 2, 3, 4, 0])
    assert s == "|none~0|+|skip_connect~0|nor_conv_1x1~1|+|nor_conv_3x3~0|avg_pool_3x3~1|none~2|"
    np.testing.assert_array_equal(nb201.from_string(s), [0, 1, 2, 3, 4, 0])
    # surrounding whitespace is tolerated
    np.testing.assert_array_equal(nb201.from_string("  " + s + "\n"), [0, 1, 2, 3, 4, 0])


def test_index_order_matches_table(table_strings):
    assert len(table_strings) == nb201.NUM_ARCHS
    archs = nb201.enumerate_all()
    for k, s in enumerate(table_strings):
        assert nb201.to_string(archs[k]) == s, k
    parsed = np.stack([nb201.from_string(s) for s in table_strings])
    np.testing.assert_array_equal(nb201.to_index(parsed), np.arange(nb201.NUM_ARCHS))
    # scalar round trips and well-known landmarks
    np.testing.assert_array_equal(nb201.from_index(0), nb201.from_string(table_strings[0]))
    assert int(nb201.to_index(nb201.from_string(table_strings[1835]))) == 1835
    np.testing.assert_array_equal(nb201.from_index(1835), [nb201.SKIP] * 6)  # the all-skip cell


def test_index_is_a_permutation_and_inverse():
    idx = nb201.to_index(_all_codes())
    np.testing.assert_array_equal(np.sort(idx), np.arange(nb201.NUM_ARCHS))
    np.testing.assert_array_equal(nb201.from_index(idx), _all_codes())


def test_encode_decode():
    codes = np.arange(nb201.NUM_ARCHS)
    np.testing.assert_array_equal(nb201.encode(nb201.decode(codes)), codes)
    assert int(nb201.encode([1, 0, 0, 0, 0, 0])) == 1
    assert int(nb201.encode([0, 0, 0, 0, 0, 1])) == 5**5
    np.testing.assert_array_equal(nb201.decode(5**5 + 2), [2, 0, 0, 0, 0, 1])


def test_enumerate_all():
    archs = nb201.enumerate_all()
    assert archs.shape == (nb201.NUM_ARCHS, nb201.NUM_EDGES)
    assert archs.dtype == np.int32
    assert archs.min() == 0 and archs.max() == nb201.NUM_OPS - 1
    assert len(np.unique(archs, axis=0)) == nb201.NUM_ARCHS


def test_mask_round_trip():
    archs = _all_codes()
    masks = np.asarray(nb201.to_mask(archs))
    assert masks.shape == (nb201.NUM_ARCHS, 6, 5) and masks.dtype == np.float32
    np.testing.assert_array_equal(masks.sum(-1), 1.0)
    np.testing.assert_array_equal(nb201.from_mask(masks), archs)
    one = np.asarray(nb201.to_mask([0, 1, 2, 3, 4, 0]))
    assert one.shape == (6, 5)
    np.testing.assert_array_equal(one.argmax(-1), [0, 1, 2, 3, 4, 0])
    # to_mask works under jit on traced architectures
    traced = jax.jit(nb201.to_mask)(jax.numpy.asarray(archs[:10]))
    np.testing.assert_array_equal(np.asarray(traced), masks[:10])


def test_sample():
    key = jax.random.key(0)
    a = nb201.sample(key, 20000)
    assert a.shape == (20000, 6) and a.dtype == np.int32
    a = np.asarray(a)
    assert a.min() == 0 and a.max() == nb201.NUM_OPS - 1
    np.testing.assert_array_equal(a, np.asarray(nb201.sample(jax.random.key(0), 20000)))
    assert not np.array_equal(a, np.asarray(nb201.sample(jax.random.key(1), 20000)))
    # each op about 1/5 of all edge slots, and per edge too (std of a frequency ~ 0.0028 / 0.0063)
    freq = np.bincount(a.ravel(), minlength=5) / a.size
    np.testing.assert_allclose(freq, 0.2, atol=0.012)
    for e in range(6):
        np.testing.assert_allclose(np.bincount(a[:, e], minlength=5) / len(a), 0.2, atol=0.025)
    nb201.validate(a)  # every sample is a valid architecture


def test_count_ops():
    np.testing.assert_array_equal(nb201.count_ops([3, 3, 2, 0, 1, 4]), [1, 1, 1, 2, 1])
    c = nb201.count_ops(nb201.enumerate_all())
    assert c.shape == (nb201.NUM_ARCHS, 5)
    np.testing.assert_array_equal(c.sum(-1), 6)


@pytest.mark.parametrize("s, match", [
    ("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|", r"3 '\+'-separated nodes, got 2"),
    (ALL_CONV3 + "+|none~0|", r"3 '\+'-separated nodes, got 4"),
    ("|conv_5x5~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|",
     "unknown op 'conv_5x5'"),
    ("|nor_conv_3x3~0|+|nor_conv_3x3~1|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|",
     "must come from node 0"),
    ("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~3|",
     "must come from node 2"),
    ("nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|",
     r"node 1 .* must be enclosed in '\|'"),
    ("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2",
     r"node 3 .* must be enclosed in '\|'"),
    ("|nor_conv_3x3~0|+|nor_conv_3x3~0nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|",
     "node 2 .* must have 2 inputs, got 1"),
    ("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|",
     "node 3 .* must have 3 inputs, got 2"),
    ("|nor_conv_3x3|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|",
     "malformed edge 'nor_conv_3x3'"),
    ("", r"3 '\+'-separated nodes, got 1"),
])
def test_from_string_errors(s, match):
    with pytest.raises(ValueError, match=match):
        nb201.from_string(s)


def test_from_string_not_a_string():
    with pytest.raises(ValueError, match="NB201 string expected, got list"):
        nb201.from_string([3, 3, 3, 3, 3, 3])


@pytest.mark.parametrize("arch", [[1, 2, 3], [0] * 7, np.zeros((6, 2), np.int32), 3])
def test_wrong_shape(arch):
    with pytest.raises(ValueError, match=r"shape \[\.\.\., 6\]"):
        nb201.validate(arch)
    with pytest.raises(ValueError, match="shape"):
        nb201.encode(arch)
    with pytest.raises(ValueError, match="shape"):
        nb201.to_mask(arch)


def test_to_string_needs_one_arch():
    with pytest.raises(ValueError, match=r"one architecture of shape \[6\]"):
        nb201.to_string(np.zeros((2, 6), np.int32))


@pytest.mark.parametrize("arch, bad", [([0, 1, 2, 3, 4, 5], "5"), ([-1, 0, 0, 0, 0, 0], "-1"),
                                       ([[0] * 6, [0, 0, 0, 0, 0, 9]], "9")])
def test_out_of_range_ops(arch, bad):
    with pytest.raises(ValueError, match=rf"op ids must be in \[0, 5\), got \[{bad}\]"):
        nb201.validate(arch)
    with pytest.raises(ValueError, match=r"op ids must be in \[0, 5\)"):
        nb201.to_index(arch)
    with pytest.raises(ValueError, match=r"op ids must be in \[0, 5\)"):
        nb201.count_ops(arch)


def test_non_integer_ops():
    with pytest.raises(ValueError, match="op ids must be integers"):
        nb201.validate([0.5, 0, 0, 0, 0, 0])
    # integral floats are accepted and converted
    np.testing.assert_array_equal(nb201.validate(np.array([3.0] * 6)), [3] * 6)
    assert nb201.validate(np.array([3.0] * 6)).dtype == np.int32


def test_from_mask_errors():
    good = np.asarray(nb201.to_mask([3] * 6))
    with pytest.raises(ValueError, match=r"shape \[\.\.\., 6, 5\], got \(6, 4\)"):
        nb201.from_mask(good[:, :4])
    with pytest.raises(ValueError, match=r"shape \[\.\.\., 6, 5\], got \(30,\)"):
        nb201.from_mask(good.ravel())
    two = good.copy()
    two[2, 0] = 1.0  # two ops on edge 2
    with pytest.raises(ValueError, match="one-hot"):
        nb201.from_mask(two)
    empty = good.copy()
    empty[4] = 0.0  # no op on edge 4
    with pytest.raises(ValueError, match="one-hot"):
        nb201.from_mask(empty)
    soft = np.full((6, 5), 0.2, np.float32)  # sums to one but is not one-hot
    with pytest.raises(ValueError, match="one-hot"):
        nb201.from_mask(soft)


@pytest.mark.parametrize("index", [-1, nb201.NUM_ARCHS, [0, 15625], [-3, 4]])
def test_from_index_out_of_range(index):
    with pytest.raises(ValueError, match=r"NB201 index must be in \[0, 15625\)"):
        nb201.from_index(index)


@pytest.mark.parametrize("code", [-1, nb201.NUM_ARCHS])
def test_decode_out_of_range(code):
    with pytest.raises(ValueError, match=r"code must be in \[0, 15625\)"):
        nb201.decode(code)
