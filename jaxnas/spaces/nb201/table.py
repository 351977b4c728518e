"""Ground-truth accuracy tables (NB201-style CSV), queried by architecture string or op-id array.

Search methods are scored against these tables, so lookups are exact: an architecture that is not
in the table is an error, never a silent NaN.
"""
from __future__ import annotations

import csv
import dataclasses
import math
import os
import warnings
from collections.abc import Sequence

import numpy as np

from jaxnas.spaces.nb201 import cell as nb

# Columns that may hold the NB201 architecture string, in order of preference.
ARCH_COLUMNS = ("ArchitectureString", "arch_str", "cellstr", "arch")
TEXT_COLUMNS = (*ARCH_COLUMNS, "UniqueString")  # text columns of the NB201 tables, read or ignored quietly

# Short names for the columns of the shipped NATS-tss (NB201) 200-epoch test-accuracy table.
ALIASES = {
    "cifar10": "CIFAR10TestAccuracy200Epochs",
    "cifar100": "CIFAR100TestAccuracy200Epochs",
    "imagenet16-120": "ImageNetTestAccuracy200Epochs",
}


def dataset_column(num_classes: int):
    """The NB201 column alias of a dataset with `num_classes` classes (None when NB201 has none)."""
    return {10: "cifar10", 100: "cifar100", 120: "imagenet16-120"}.get(num_classes)


@dataclasses.dataclass(frozen=True, eq=False)
class BenchTable:
    """One row per architecture: op ids `archs` int32[N, 6] and numeric `data` float64[N, C].

    `columns` names the C numeric columns (CSV order); `arch_column` is the CSV column the
    architectures were read from. Arrays are read-only. Build with `load_table`.
    """

    path: str
    arch_column: str
    columns: tuple[str, ...]
    archs: np.ndarray  # int32[N, 6]
    data: np.ndarray  # float64[N, C]
    _row_of_code: np.ndarray = dataclasses.field(repr=False)  # int64[15625], -1 = absent

    def __len__(self) -> int:
        return int(self.archs.shape[0])

    @property
    def strings(self) -> list[str]:
        """Canonical NB201 strings of all rows, in row order."""
        return [nb.to_string(a) for a in self.archs]

    def resolve(self, name: str) -> str:
        """Full column name for `name` (a column name or an alias such as 'cifar10')."""
        if name in self.columns:
            return name
        full = ALIASES.get(name.lower()) if isinstance(name, str) else None
        if full is not None and full in self.columns:
            return full
        aliases = [a for a, c in ALIASES.items() if c in self.columns]
        raise ValueError(
            f"unknown column {name!r}; expected one of {list(self.columns)}"
            + (f" or an alias {aliases}" if aliases else "")
        )

    def rows(self, archs) -> np.ndarray:
        """Row numbers of architectures: one NB201 string, a list of strings, or int32[..., 6]."""
        codes = _codes(archs)
        rows = self._row_of_code[codes]
        missing = rows < 0
        if np.any(missing):
            bad = nb.decode(np.asarray(codes)[missing].ravel()[0])
            raise ValueError(
                f"architecture {nb.to_string(bad)!r} is not in the table {self.path!r} "
                f"({np.count_nonzero(missing)} of {missing.size} queried are missing)"
            )
        return rows

    def check_covers(self, archs, what: str = "the architectures asked for") -> None:
        """ValueError, before any work is done, when the table lacks some of `archs` (int32[K, 6])."""
        missing = self._row_of_code[nb.encode(nb.validate(np.asarray(archs)))] < 0
        if np.any(missing):
            first = nb.to_string(np.asarray(archs)[missing][0])
            raise ValueError(f"--bench-table {self.path} lacks {np.count_nonzero(missing)} of {missing.size} "
                             f"{what} (e.g. {first}); give a complete NB201 table or leave --bench-table out")

    def lookup(self, arch) -> dict[str, float]:
        """All numeric columns of one architecture (NB201 string or int32[6]) as {column: float}."""
        if not isinstance(arch, str):
            a = nb.validate(arch)
            if a.ndim != 1:
                raise ValueError(f"lookup takes one architecture of shape [6], got {a.shape}")
        row = int(self.rows(arch))
        return {c: float(v) for c, v in zip(self.columns, self.data[row])}

    def values(self, archs, column: str) -> np.ndarray:
        """Column `column` for a batch: int32[..., 6] or a list of NB201 strings -> float64[...]."""
        j = self.columns.index(self.resolve(column))
        return self.data[self.rows(archs), j]

    def column(self, name: str) -> np.ndarray:
        """The full column (row order), read-only float64[N]."""
        return self.data[:, self.columns.index(self.resolve(name))]

    def best(self, column: str) -> tuple[str, float]:
        """(NB201 string, value) of the row with the largest value in `column` (NaNs ignored)."""
        col = self.column(column)
        if np.all(np.isnan(col)):
            raise ValueError(f"column {column!r} has no numeric values")
        row = int(np.nanargmax(col))
        return nb.to_string(self.archs[row]), float(col[row])


def _codes(archs) -> np.ndarray:
    """Base-5 codes of one string, a sequence of strings, or int32[..., 6]."""
    if isinstance(archs, str):
        return nb.encode(nb.from_string(archs))
    if isinstance(archs, Sequence) and len(archs) and all(isinstance(s, str) for s in archs):
        return nb.encode(np.stack([nb.from_string(s) for s in archs]))
    try:
        a = np.asarray(archs)
    except ValueError:
        a = np.asarray(archs, dtype=object)
    if a.dtype.kind == "U" and a.size:  # an array of strings
        codes = [nb.encode(nb.from_string(str(x))) for x in a.ravel()]
        return np.asarray(codes, np.int64).reshape(a.shape)
    if a.dtype.kind in "UO":
        raise ValueError("architectures must be NB201 strings (str or list of str) or int arrays [..., 6]")
    return nb.encode(nb.validate(a))


# Fast string -> op ids: "|a~0|+|b~0|c~1|+|d~0|e~1|f~2|".split("|") puts the 6 edge tokens at
# these positions; anything else falls back to nb.from_string for its error message.
_TOKEN_POS = (1, 3, 4, 6, 7, 8)
_EDGE_TOKENS = tuple({f"{op}~{src}": o for o, op in enumerate(nb.OPS)} for _, src in nb.EDGES)


def _parse(s: str) -> list[int]:
    p = s.strip().split("|")
    if len(p) == 10 and p[0] == p[9] == "" and p[2] == p[5] == "+":
        t0, t1, t2, t3, t4, t5 = _EDGE_TOKENS
        try:
            return [t0[p[1]], t1[p[3]], t2[p[4]], t3[p[6]], t4[p[7]], t5[p[8]]]
        except KeyError:
            pass
    return nb.from_string(s).tolist()


def _numeric(cells) -> np.ndarray:
    """float64 column, or ValueError if some non-empty cell is not a number."""
    try:
        return np.array(cells, np.float64)
    except ValueError:
        return np.array([_float(c) for c in cells], np.float64)


def _float(cell: str) -> float:
    cell = cell.strip()
    if cell == "" or cell.lower() in ("nan", "na", "null", "none"):
        return math.nan
    return float(cell)


def _is_number(cell: str) -> bool:
    try:
        _float(cell)
    except ValueError:
        return False
    return True


def load_table(path: str | os.PathLike) -> BenchTable:
    """Read an NB201-style CSV: a header, an architecture-string column, numeric accuracy columns.

    The architecture column is the first of `ARCH_COLUMNS` present; numeric columns are those whose
    every non-empty cell parses as a float (empty/'nan' cells become NaN). Text columns are ignored;
    a column with some numbers and a cell that is not one, or a text column other than
    `TEXT_COLUMNS`, is dropped with a warning naming it. Raises FileNotFoundError for a missing file and
    ValueError for a file without an architecture column, without numeric columns, with an unparsable or
    repeated architecture.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"benchmark table not found: {path!r} (expected an NB201-style CSV)")
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if not header:
            raise ValueError(f"{path!r} is empty; expected a CSV header with an architecture column")
        header = [h.strip() for h in header]
        body = [r for r in reader if r and (len(r) > 1 or r[0].strip())]  # skip blank lines

    arch_col = next((c for c in ARCH_COLUMNS if c in header), None)
    if arch_col is None:
        raise ValueError(
            f"{path!r} has no architecture column; expected one of {list(ARCH_COLUMNS)}, got {header}"
        )
    for i, r in enumerate(body):
        if len(r) != len(header):
            raise ValueError(f"{path!r} line {i + 2} has {len(r)} fields, header has {len(header)}")
    if not body:
        raise ValueError(f"{path!r} has a header but no rows")

    cols = list(zip(*body))
    a = header.index(arch_col)
    parsed = []
    for i, s in enumerate(cols[a]):
        try:
            parsed.append(_parse(s))
        except ValueError as e:
            raise ValueError(f"{path!r} line {i + 2}, column {arch_col!r}: {e}") from None
    archs = np.array(parsed, np.int32).reshape(-1, nb.NUM_EDGES)

    names, data = [], []
    for j, name in enumerate(header):
        if j == a:
            continue
        try:
            vals = _numeric(cols[j])
        except ValueError:  # a text column (e.g. UniqueString), or numbers with a stray cell
            bad = [i for i, c in enumerate(cols[j]) if not _is_number(c)]
            if len(bad) < len(cols[j]):  # some cells are numbers: a damaged numeric column
                warnings.warn(f"{path}: column {name!r} dropped: line {bad[0] + 2} holds "
                              f"{cols[j][bad[0]]!r}, not a number ({len(bad)} such cells)", stacklevel=2)
            elif name not in TEXT_COLUMNS:  # a text column the NB201 tables do not have
                warnings.warn(f"{path}: column {name!r} ignored: it holds text ({cols[j][0]!r}), not "
                              "accuracies",
                              stacklevel=2)
            continue
        if np.all(np.isnan(vals)):
            continue
        names.append(name)
        data.append(vals)
    if not names:
        raise ValueError(f"{path!r} has no numeric columns besides {arch_col!r}; got {header}")

    codes = nb.encode(archs)
    row_of_code = np.full(nb.NUM_ARCHS, -1, np.int64)
    row_of_code[codes] = np.arange(len(body))
    if np.count_nonzero(row_of_code >= 0) != len(body):
        uniq, counts = np.unique(codes, return_counts=True)
        dup = nb.to_string(nb.decode(uniq[counts > 1][0]))
        raise ValueError(f"{path!r} lists architecture {dup!r} more than once; expected one row each")

    data_arr = np.asarray(data, np.float64).T.copy()
    for arr in (archs, data_arr, row_of_code):
        arr.setflags(write=False)
    return BenchTable(path, arch_col, tuple(names), archs, data_arr, row_of_code)
