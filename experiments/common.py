"""What several experiments share: the data and ground-truth paths, and the statistics they report
(permutation p-values, the #params free baseline). Experiments import it through sys.path."""
from __future__ import annotations

import itertools
import json
import pathlib

import numpy as np

SHARED = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"
TABLE = SHARED / "nb201" / "nats_tss_hp200_test_acc.csv"
DATA = SHARED / "cifar10-jpeg" / "cifar10-jpeg.tar.gz"
C10 = "CIFAR10TestAccuracy200Epochs"


def cli(args, out: pathlib.Path) -> dict:
    """result.json of `jaxnas <args> --data DATA --out out`, run unless it has finished before."""
    from jaxnas.cli import main
    if not (out / "result.json").exists():
        rc = main([*args, "--data", str(DATA), "--out", str(out), "--no-progress", "--overwrite"])
        if rc:
            raise SystemExit(f"{' '.join(str(a) for a in args[:3])} failed with exit code {rc}")
    return json.loads((out / "result.json").read_text())


def permutation_p(scores, truth, tau, n_perm, rng) -> float:
    """Two-sided permutation p-value of Kendall's tau: shuffles of `scores` reaching |tau|."""
    from jaxnas.bench import kendall_tau
    hits = sum(abs(kendall_tau(rng.permutation(scores), truth)) >= abs(tau) for _ in range(n_perm))
    return (1 + hits) / (1 + n_perm)


def exact_permutation_p(x, y) -> float:
    """Two-sided p of the difference in means over every split of the pooled values."""
    pooled, n = np.concatenate([x, y]), len(x)
    obs = abs(np.mean(x) - np.mean(y))
    diffs = [abs(pooled[list(c)].mean() - np.delete(pooled, list(c)).mean())
             for c in itertools.combinations(range(len(pooled)), n)]
    return float(np.mean(np.asarray(diffs) >= obs - 1e-12))


def params_pick(params, truth, k, rng, draws=2000) -> float:
    """Expected NB201 accuracy of the most-parameter architecture among k uniform draws."""
    picks = [truth[idx[np.argmax(params[idx])]] for idx in (rng.choice(len(truth), k, replace=False)
                                                            for _ in range(draws))]
    return float(np.mean(picks))
