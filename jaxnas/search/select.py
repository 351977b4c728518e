"""Selection among evaluated candidates, on host numpy: the one tie rule, top-k, the Pareto front,
the best under a budget, dedup, and indexing a batch of architectures.

Every method picks its winner through `best` (or `best_by_score` for a single score), so "ties go to
the lower loss, then to the first candidate" is written once. Candidates are indexed in the order
they were drawn or listed; "first" always means the lowest index.
"""
from __future__ import annotations

import jax
import numpy as np


def _signed(x) -> np.ndarray:
    """`x` as an array that negates without wrapping (bool and unsigned as int64)."""
    x = np.asarray(x)
    return x.astype(np.int64) if x.dtype.kind in "bu" else x


def order(acc, loss) -> np.ndarray:
    """Indices from best to worst: highest accuracy, then lowest loss, then first. NaN sorts as the
    worst accuracy (or loss)."""
    acc, loss = _signed(acc), np.asarray(loss)
    return np.lexsort((np.arange(len(acc)), loss, -acc))


def best(acc, loss) -> int:
    """The index of the best candidate by `order`: the one tie rule of every selection."""
    if len(acc) == 0:
        raise ValueError("no candidates to choose from")
    return int(order(acc, loss)[0])


def order_by_score(scores) -> np.ndarray:
    """Indices from the highest score to the lowest; NaN lowest (below -inf), ties to the first."""
    x = _signed(scores)
    return np.lexsort((np.arange(len(x)), -x, np.isnan(x) if x.dtype.kind == "f" else np.zeros(len(x), bool)))


def best_by_score(scores) -> int:
    """The index of the highest score (`order_by_score`'s first)."""
    if len(scores) == 0:
        raise ValueError("no candidates to choose from")
    return int(order_by_score(scores)[0])


def top_k(values, k: int) -> np.ndarray:
    """Indices of the k largest values, largest first (`order_by_score`: NaN lowest, ties to the
    first); all of them when k exceeds their number."""
    return order_by_score(values)[:max(int(k), 0)]


def pareto_front(objectives, maximize, duplicates: str = "all") -> np.ndarray:
    """Indices, ascending, of the non-dominated rows of `objectives` (float[n, m], m >= 1).

    `maximize`: a bool per objective (or one for all), True where larger is better. Row i is
    dominated when some row j is at least as good in every objective and strictly better in one.
    Identical rows do not dominate each other: `duplicates="all"` keeps every copy on the front
    (dedup the architectures first, `dedup`, when one of each is wanted); `"first"` keeps the first
    only, NSE's weak-dominance filter (orashi/NSE_NAS main.py:244-255: a row matched in every
    objective by another is removed, and of identical rows the first stays). NaN is refused.
    """
    if duplicates not in ("all", "first"):
        raise ValueError(f"duplicates must be 'all' or 'first', got {duplicates!r}")
    y = np.asarray(objectives, np.float64)
    if y.ndim != 2 or y.shape[1] < 1:
        raise ValueError(f"objectives must be [n, m] with m >= 1; got shape {y.shape}")
    if np.isnan(y).any():
        raise ValueError("objectives hold NaN: a NaN point can neither dominate nor be dominated")
    y = np.where(np.broadcast_to(np.asarray(maximize, bool), y.shape[1:]), -y, y)  # all minimised
    dominated = np.zeros(len(y), bool)
    block = max(1, 2**22 // max(len(y) * y.shape[1], 1))  # bounds the [block, n, m] comparison
    for s in range(0, len(y), block):
        a, b = y[s:s + block, None, :], y[None, :, :]  # does row j (b) dominate row i (a)?
        dominated[s:s + block] = ((b <= a).all(-1) & (b < a).any(-1)).any(-1)
    if duplicates == "first" and len(y):
        first = np.unique(y, axis=0, return_index=True)[1]
        dominated |= ~np.isin(np.arange(len(y)), first)
    return np.flatnonzero(~dominated)


def best_under_budget(cost, acc, budget, loss=None) -> int:
    """The index of the best candidate (`best`'s tie rule; without `loss`, ties to the first) among
    those with cost <= budget; ValueError naming the cheapest cost when none fits."""
    cost = np.asarray(cost, np.float64)
    fits = np.flatnonzero(cost <= budget)
    if len(fits) == 0:
        known = cost[~np.isnan(cost)]
        cheapest = f"the cheapest costs {float(known.min())}" if len(known) else "no candidate has a cost"
        raise ValueError(f"no candidate within the budget {budget}: {cheapest}")
    loss = np.zeros(len(cost)) if loss is None else np.asarray(loss)
    return int(fits[best(np.asarray(acc)[fits], loss[fits])])


def dedup(hashes) -> np.ndarray:
    """Indices of the first occurrence of each hash (e.g. `space.hash` of a batch), ascending."""
    h = np.asarray(hashes)
    if len(h) == 0:
        return np.zeros(0, np.int64)
    _, first = np.unique(h, axis=0 if h.ndim > 1 else None, return_index=True)
    return np.sort(first)


def take(archs, idx):
    """Architectures `idx` (an int, or an index array) of a batch: every leaf of the pytree `archs`
    (leading K axis) indexed on the host; an int drops the K axis."""
    return jax.tree.map(lambda leaf: np.asarray(leaf)[idx], archs)
