"""jaxnas.bench: the real NB201 table (known facts), lookups and errors, and the ranking metrics."""
import dataclasses
import json
import math

import numpy as np
import pytest

from jaxnas.bench import (
    BenchTable,
    kendall_tau,
    load_table,
    rank_summary,
    spearman,
    top_k_overlap,
)
from jaxnas.spaces import nb201

C10 = "CIFAR10TestAccuracy200Epochs"
C100 = "CIFAR100TestAccuracy200Epochs"
IMNET = "ImageNetTestAccuracy200Epochs"
BEST = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"
ALL_SKIP = "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|"


@pytest.fixture(scope="module")
def table(nb201_table_path):
    return load_table(nb201_table_path)


def _write(path, header, rows):
    path.write_text("\n".join([",".join(header)] + [",".join(map(str, r)) for r in rows]) + "\n")
    return path


# Five architectures for the synthetic table: truth 10..50, score ordering with two swaps.
SYN_ARCHS = [nb201.to_string(nb201.from_index(i)) for i in (0, 1, 2, 3, 4)]
SYN_TRUTH = [10.0, 20.0, 30.0, 40.0, 50.0]
SYN_SCORE = [1.0, 3.0, 2.0, 5.0, 4.0]


@pytest.fixture
def syn_path(tmp_path):
    rows = [(s, t, p, "x") for s, t, p in zip(SYN_ARCHS, SYN_TRUTH, SYN_SCORE)]
    return _write(tmp_path / "syn.csv", ["arch_str", "acc", "score", "note"], rows)


# ----------------------------------------------------------------------------- the real table


def test_real_table_shape_and_columns(table):
    assert isinstance(table, BenchTable)
    assert len(table) == nb201.NUM_ARCHS == 15625
    assert table.columns == (C10, C100, IMNET)  # UniqueString is not numeric and is dropped
    assert table.arch_column == "ArchitectureString"
    assert table.data.shape == (15625, 3) and table.archs.shape == (15625, 6)
    assert not np.isnan(table.data).any()


def test_rows_are_nb201_indices(table):
    idx = np.array([0, 1, 777, 6111, 15624])
    np.testing.assert_array_equal(table.archs[idx], nb201.from_index(idx))


def test_best_cifar10_architecture(table):
    col = table.column("cifar10")
    assert col.max() == pytest.approx(94.37333, abs=1e-4)
    assert int(np.argmax(col)) == 6111
    assert nb201.to_string(table.archs[6111]) == BEST
    assert table.lookup(BEST)[C10] == pytest.approx(94.37333, abs=1e-4)
    assert table.best("cifar10") == (BEST, pytest.approx(94.37333, abs=1e-4))


def test_all_skip_architecture(table):
    acc = table.lookup(ALL_SKIP)
    assert set(acc) == {C10, C100, IMNET}
    assert acc[C10] == pytest.approx(54.297, abs=1e-3)
    assert all(isinstance(v, float) for v in acc.values())


def test_lookup_by_string_and_array_agree(table):
    for i in (0, 42, 6111, 15624):
        arch = nb201.from_index(i)
        by_arr = table.lookup(arch)
        by_str = table.lookup(nb201.to_string(arch))
        assert by_arr == by_str
        assert by_arr[C100] == table.column(C100)[i]
    assert table.lookup(np.array(nb201.from_string(ALL_SKIP), np.int64)) == table.lookup(ALL_SKIP)


def test_aliases_match_full_names(table):
    for alias, full in (("cifar10", C10), ("cifar100", C100), ("imagenet16-120", IMNET)):
        np.testing.assert_array_equal(table.column(alias), table.column(full))
    assert not np.array_equal(table.column("cifar10"), table.column("cifar100"))


def test_values_batch(table):
    idx = np.array([5, 6111, 0, 9999])
    archs = nb201.from_index(idx)
    vals = table.values(archs, "cifar10")
    assert vals.shape == (4,) and vals.dtype == np.float64
    np.testing.assert_array_equal(vals, table.column(C10)[idx])
    strs = [nb201.to_string(a) for a in archs]
    np.testing.assert_array_equal(table.values(strs, IMNET), table.column(IMNET)[idx])
    # leading batch dims are kept
    assert table.values(archs.reshape(2, 2, 6), "cifar100").shape == (2, 2)


def test_table_is_immutable(table):
    with pytest.raises(dataclasses.FrozenInstanceError):
        table.columns = ()
    with pytest.raises(ValueError):
        table.data[0, 0] = 0.0


def test_lookup_errors(table):
    with pytest.raises(ValueError, match="unknown column 'cifar1000'.*expected"):
        table.column("cifar1000")
    with pytest.raises(ValueError, match="unknown column"):
        table.values(nb201.from_index([0]), "acc")
    with pytest.raises(ValueError, match="unknown op"):
        table.lookup("|conv_7x7~0|+|none~0|none~1|+|none~0|none~1|none~2|")
    with pytest.raises(ValueError, match=r"\[0, 5\)"):
        table.lookup(np.array([0, 1, 2, 3, 4, 5]))
    with pytest.raises(ValueError, match="shape"):
        table.lookup(nb201.from_index([0, 1]))  # a batch is not one architecture


# ----------------------------------------------------------------------------- loading errors


def test_synthetic_table_loads(syn_path):
    t = load_table(syn_path)
    assert t.arch_column == "arch_str"
    assert t.columns == ("acc", "score")  # 'note' is not numeric
    assert len(t) == 5
    assert t.lookup(SYN_ARCHS[3]) == {"acc": 40.0, "score": 5.0}
    with pytest.raises(ValueError, match="not in the table"):
        t.lookup(nb201.from_index(6111))
    with pytest.raises(ValueError, match="unknown column 'cifar10'"):
        t.column("cifar10")  # alias only applies when its column exists


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_table(tmp_path / "nope.csv")


def test_no_arch_column(tmp_path):
    p = _write(tmp_path / "t.csv", ["name", "acc"], [(SYN_ARCHS[0], 1.0)])
    with pytest.raises(ValueError, match="no architecture column.*expected one of"):
        load_table(p)


def test_bad_arch_string_and_duplicates(tmp_path):
    p = _write(tmp_path / "bad.csv", ["arch", "acc"], [(SYN_ARCHS[0], 1.0), ("|oops|", 2.0)])
    with pytest.raises(ValueError, match="line 3"):
        load_table(p)
    p = _write(tmp_path / "dup.csv", ["cellstr", "acc"], [(SYN_ARCHS[0], 1.0), (SYN_ARCHS[0], 2.0)])
    with pytest.raises(ValueError, match="more than once"):
        load_table(p)
    p = _write(tmp_path / "nonum.csv", ["arch", "note"], [(SYN_ARCHS[0], "a")])
    with pytest.raises(ValueError, match="no numeric columns"):
        load_table(p)


def test_empty_cells_are_nan(tmp_path):
    p = _write(tmp_path / "nan.csv", ["arch", "acc"], [(SYN_ARCHS[0], 1.5), (SYN_ARCHS[1], "")])
    t = load_table(p)
    assert t.column("acc")[0] == 1.5 and math.isnan(t.column("acc")[1])


# ----------------------------------------------------------------------------- ranking


def test_perfect_and_reversed_orderings():
    x = np.arange(20.0)
    assert kendall_tau(x, x) == pytest.approx(1.0)
    assert spearman(2 * x + 3, x) == pytest.approx(1.0)
    assert kendall_tau(-x, x) == pytest.approx(-1.0)
    assert spearman(x[::-1], x) == pytest.approx(-1.0)


def test_kendall_hand_computed():
    # 6 pairs, only (1, 2) discordant: tau = (5 - 1) / 6
    assert kendall_tau([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(2 / 3)
    # d = (0, 1, -1, 1, -1): rho = 1 - 6 * 4 / (5 * 24)
    assert spearman([1, 3, 2, 5, 4], [1, 2, 3, 4, 5]) == pytest.approx(0.8)


def test_nan_pairs_are_ignored():
    s = [1, 2, np.nan, 3, 9, 4]
    t = [1, 3, 7, 2, np.nan, 4]
    assert kendall_tau(s, t) == pytest.approx(2 / 3)
    assert spearman(s, t) == pytest.approx(spearman([1, 2, 3, 4], [1, 3, 2, 4]))
    assert rank_summary(s, t, ks=(2,))["n"] == 4
    assert math.isnan(kendall_tau([np.nan, 1.0], [1.0, 2.0]))  # one pair left


def test_top_k_overlap_constructed():
    scores = [0.9, 0.1, 0.8, 0.2, 0.7, 0.3]
    truth = [1, 2, 3, 4, 5, 6]
    # true top-3 = {5, 4, 3}; top-3 by score = {0, 2, 4}; shared: {4}
    assert top_k_overlap(scores, truth, 3) == pytest.approx(1 / 3)
    assert top_k_overlap(scores, truth, 1) == 0.0
    assert top_k_overlap(truth, truth, 2) == 1.0
    assert top_k_overlap(scores, truth, 100) == 1.0  # k clipped to n
    with pytest.raises(ValueError, match="positive integer"):
        top_k_overlap(scores, truth, 0)


def test_length_mismatch():
    for fn in (kendall_tau, spearman, rank_summary):
        with pytest.raises(ValueError, match="same length"):
            fn([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="same length"):
        top_k_overlap([1, 2, 3], [1, 2], 1)


def test_rank_summary_on_synthetic_table(syn_path):
    t = load_table(syn_path)
    archs = nb201.from_index([4, 0, 3, 1, 2])  # any order: scores and truth come from the same rows
    summary = rank_summary(t.values(archs, "score"), t.values(archs, "acc"), ks=(2, 3, 10))
    assert summary == {
        "n": 5,
        "kendall_tau": pytest.approx(0.6),  # 8 concordant, 2 discordant of 10 pairs
        "spearman": pytest.approx(0.8),
        "top2_overlap": 1.0,
        "top3_overlap": pytest.approx(2 / 3),
        "top10_overlap": 1.0,  # k clipped to 5
    }
    assert all(type(v) is float for k, v in summary.items() if k != "n")
    assert json.loads(json.dumps(summary)) == summary


def test_rank_summary_on_real_table(table):
    truth = table.column("cifar10")
    noisy = truth + np.random.default_rng(0).normal(0, 1.0, truth.shape)
    s = rank_summary(noisy, truth)
    assert set(s) == {"n", "kendall_tau", "spearman", "top10_overlap", "top50_overlap"}
    assert s["n"] == 15625
    assert 0.5 < s["kendall_tau"] < s["spearman"] < 1.0
    # CIFAR-10 and CIFAR-100 rankings agree strongly but not perfectly
    assert 0.8 < kendall_tau(table.column("cifar100"), truth) < 1.0
