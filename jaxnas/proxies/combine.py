"""Combination rules of atomic training-free metrics, with weights calibrated on a calibration set.

DAS (arXiv 2212.12132) decouples NASWOT into atomic metrics and argues that better *combination
rules* rank better; AZ-NAS (Lee & Ham, CVPR 2024, cvlab-yonsei/AZ-NAS) aggregates its proxies by a
sum of log-ranks, sum_m log(rank_m / n) with rank n the best of n candidates, which needs no scale
matching. Two rules here, each with one weight per metric:
  - "logrank": sum_m w_m log(rank_m / n), ranks ascending (1 = lowest score), ties averaged;
  - "zscore":  sum_m w_m (x_m - mean_m) / std_m over the scored population.
Both are relative to the population scored together (a search's N candidates, a `jaxnas score`
run's architectures): adding candidates changes every candidate's aggregate, never their order
under a single metric. NaN ranks lowest; for z-scores non-finite values are clipped to the finite
range.

`calibrate` chooses the weights on a calibration set (e.g. 200 seeded NB201 architectures against
their cifar10-valid *validation* accuracy), never on the accuracy a result is judged by: coordinate
ascent over a weight grid, maximising Kendall tau, deterministic (ties keep the earlier weight).
"""
from __future__ import annotations

import dataclasses
import json
import pathlib

import numpy as np

from jaxnas.bench import kendall_tau

KINDS = ("logrank", "zscore")
GRID = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0)


def _clean(x) -> np.ndarray:
    """float64 values with NaN and -inf replaced by the lowest finite value, +inf by the highest."""
    x = np.asarray(x, np.float64)
    finite = np.isfinite(x)
    low = x[finite].min() if finite.any() else 0.0
    return np.where(finite, x, np.where(x == np.inf, x[finite].max() if finite.any() else 0.0, low))


def ranks(x) -> np.ndarray:
    """Ascending ranks 1..n (1 = lowest), ties given their average rank; NaN ranks with -inf, lowest."""
    x = np.asarray(x, np.float64)
    x = np.where(np.isnan(x), -np.inf, x)
    order = np.argsort(x, kind="stable")
    r = np.empty(len(x), np.float64)
    r[order] = np.arange(1, len(x) + 1)
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=r)
    return sums[inverse] / counts[inverse]


def standardise(x) -> np.ndarray:
    x = _clean(x)
    std = x.std()
    return (x - x.mean()) / (std if std > 0 else 1.0)


@dataclasses.dataclass(frozen=True)
class Rule:
    """A weighted combination of named metrics (`kind`: logrank | zscore)."""
    kind: str
    metrics: tuple[str, ...]
    weights: tuple[float, ...]

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"combination rule must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if len(self.metrics) != len(self.weights) or not self.metrics:
            raise ValueError("a combination rule needs one weight per metric, and at least one metric")
        if not all(np.isfinite(w) for w in self.weights):
            raise ValueError(f"a combination rule's weights must be finite numbers, got {list(self.weights)}")
        if not any(self.weights):
            raise ValueError("a combination rule needs a non-zero weight (all zero: every aggregate is "
                             "equal)")

    def __call__(self, scores: dict) -> np.ndarray:
        """The aggregate of every architecture of the population `scores` ({metric: values})."""
        missing = [m for m in self.metrics if m not in scores]
        if missing:
            raise ValueError(f"the rule combines {', '.join(self.metrics)}; missing {', '.join(missing)}")
        n = len(scores[self.metrics[0]])
        total = np.zeros(n, np.float64)
        for m, w in zip(self.metrics, self.weights):
            if w:
                total += w * (np.log(ranks(scores[m]) / n) if self.kind == "logrank"
                              else standardise(scores[m]))
        return total

    def to_json(self) -> dict:
        return {"kind": self.kind, "metrics": list(self.metrics), "weights": list(self.weights)}

    @classmethod
    def from_json(cls, d: dict) -> Rule:
        if not isinstance(d, dict) or not {"kind", "metrics", "weights"} <= set(d):
            raise ValueError("expected a JSON object with keys kind, metrics and weights")
        for key in ("metrics", "weights"):
            if not isinstance(d[key], list):  # a malformed file: load_rule reports ValueErrors
                raise ValueError(f"{key!r} must be a list (one entry per metric), got {d[key]!r}")  # noqa: TRY004
        if not all(isinstance(m, str) for m in d["metrics"]):
            raise ValueError(f"'metrics' must list metric names, got {d['metrics']!r}")
        if not all(isinstance(w, (int, float)) and not isinstance(w, bool) for w in d["weights"]):
            raise ValueError(f"'weights' must list numbers, got {d['weights']!r}")
        return cls(d["kind"], tuple(d["metrics"]), tuple(float(w) for w in d["weights"]))


# Rules as their sources define them (no calibration here):
NAMED = {
    # AZ-NAS's aggregate (NB201/tss_general.ipynb): log-ranks of its three components and FLOPs
    "aznas": Rule("logrank", ("az_expressivity", "az_progressivity", "az_trainability", "flops"), (1.0,) * 4),
    # NASWOT and the parameter count, log-rank summed (issue 21: ~0.887 Spearman on NB201)
    "naswot_params": Rule("logrank", ("naswot", "params"), (1.0, 1.0)),
}


def load_rule(spec: str) -> Rule:
    """A named rule (`NAMED`) or a rule written as JSON ({"kind", "metrics", "weights"}, e.g. by
    `calibrate` in experiments/zero_cost); ValueError naming what is wrong."""
    if spec in NAMED:
        return NAMED[spec]
    path = pathlib.Path(spec).expanduser()
    if not path.suffix == ".json":
        raise ValueError(f"proxy.rule: {spec!r} is neither a named rule ({', '.join(NAMED)}) nor a rule "
                         ".json file")
    if path.is_dir():
        raise ValueError(f"proxy.rule: {path} is a folder; expected a rule .json file")
    try:
        return Rule.from_json(json.loads(path.read_text()))
    except FileNotFoundError:
        raise ValueError(f"proxy.rule: no file {path}") from None
    except OSError as err:
        raise ValueError(f"proxy.rule: cannot read {path}: {err.strerror or err}") from None
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"proxy.rule: {path} is not a rule ({{'kind', 'metrics', 'weights'}}): "
                         f"{err}") from None


def calibrate(scores: dict, target, metrics, kind: str = "logrank", grid=GRID,
              sweeps: int = 3) -> tuple[Rule, float]:
    """(rule, Kendall tau on the calibration set) with weights from `grid` chosen by coordinate
    ascent from all-ones; `scores` and `target` are the calibration architectures' values."""
    metrics = tuple(metrics)
    weights = [1.0] * len(metrics)

    def tau(w):
        return kendall_tau(Rule(kind, metrics, tuple(w))(scores), target) if any(w) else -np.inf

    best = tau(weights)
    for _ in range(sweeps):
        improved = False
        for i in range(len(metrics)):
            for g in grid:
                trial = weights[:i] + [float(g)] + weights[i + 1:]
                t = tau(trial)
                if t > best + 1e-12:
                    best, weights, improved = t, trial, True
        if not improved:
            break
    return Rule(kind, metrics, tuple(weights)), float(best)
