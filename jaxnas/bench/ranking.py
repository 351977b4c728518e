"""Ranking metrics between predicted scores and ground-truth accuracies.

One-shot NAS is judged by how well supernet/proxy scores order architectures, not by their scale,
so these are rank correlations and top-k overlaps. All results are plain Python numbers.
"""
from __future__ import annotations

import warnings

import numpy as np
from scipy import stats


def _pair(scores, truth) -> tuple[np.ndarray, np.ndarray]:
    """Both as float64[n] with pairs where either value is NaN removed; ValueError on bad shapes."""
    s = np.asarray(scores, np.float64)
    t = np.asarray(truth, np.float64)
    if s.ndim != 1 or t.ndim != 1:
        raise ValueError(f"scores and truth must be 1-D, got shapes {s.shape} and {t.shape}")
    if s.shape != t.shape:
        raise ValueError(f"scores and truth must have the same length, got {s.size} and {t.size}")
    keep = ~(np.isnan(s) | np.isnan(t))
    return s[keep], t[keep]


def _corr(fn, scores, truth) -> float:
    s, t = _pair(scores, truth)
    if s.size < 2:
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant input -> NaN, returned as such
        return float(fn(s, t)[0])


def kendall_tau(scores, truth) -> float:
    """Kendall's tau-b between `scores` and `truth` (scipy.stats.kendalltau).

    Pairs where either value is NaN are ignored. Returns NaN when fewer than two pairs remain or
    either side is constant.
    """
    return _corr(stats.kendalltau, scores, truth)


def spearman(scores, truth) -> float:
    """Spearman's rank correlation rho (scipy.stats.spearmanr).

    Pairs where either value is NaN are ignored. Returns NaN when fewer than two pairs remain or
    either side is constant.
    """
    return _corr(stats.spearmanr, scores, truth)


def _top(x: np.ndarray, k: int) -> np.ndarray:
    # Largest k; ties broken by position (stable sort), so results are deterministic.
    return np.argsort(-x, kind="stable")[:k]


def top_k_overlap(scores, truth, k: int) -> float:
    """Fraction of the true top-k (largest `truth`) that are also in the top-k by `scores`.

    Pairs where either value is NaN are ignored; k is clipped to the number of remaining pairs.
    Ties are broken by position. Returns NaN when no pairs remain.
    """
    if int(k) != k or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    s, t = _pair(scores, truth)
    k = min(int(k), s.size)
    if k == 0:
        return float("nan")
    return len(set(_top(t, k).tolist()) & set(_top(s, k).tolist())) / k


def rank_summary(scores, truth, ks=(10, 50)) -> dict:
    """{'n', 'kendall_tau', 'spearman', 'top{k}_overlap' for k in ks}, JSON-serialisable.

    `n` (an int) counts the pairs used, i.e. those where neither value is NaN.
    """
    s, t = _pair(scores, truth)
    out = {"n": int(s.size), "kendall_tau": kendall_tau(s, t), "spearman": spearman(s, t)}
    for k in ks:
        out[f"top{int(k)}_overlap"] = top_k_overlap(s, t, k)
    return out
