"""Combination rules of training-free metrics (jaxnas.proxies.combine) against plain loops, and
weight calibration on synthetic data where the right answer is known."""
import math

import numpy as np
import pytest

from jaxnas.bench import kendall_tau
from jaxnas.proxies.combine import Rule, calibrate, ranks


def plain_ranks(x):
    """1 + (number of lower values) + (ties - 1) / 2, with NaN counted as -inf."""
    vals = [-math.inf if math.isnan(v) else v for v in x]
    return [1 + sum(u < v for u in vals) + (sum(u == v for u in vals) - 1) / 2 for v in vals]


def test_ranks_average_ties_and_put_missing_values_lowest():
    x = [3.0, 1.0, float("nan"), 3.0, -float("inf"), 7.0, float("inf")]
    np.testing.assert_allclose(ranks(x), plain_ranks(x))
    x = np.random.default_rng(0).integers(0, 5, 40).astype(float)
    np.testing.assert_allclose(ranks(x), plain_ranks(x))


def test_rules_equal_plain_sums():
    rng = np.random.default_rng(1)
    scores = {"a": rng.normal(size=30), "b": rng.integers(0, 4, 30).astype(float)}
    got = Rule("logrank", ("a", "b"), (1.0, 0.5))(scores)
    ra, rb = plain_ranks(scores["a"]), plain_ranks(scores["b"])
    want = [math.log(ra[i] / 30) + 0.5 * math.log(rb[i] / 30) for i in range(30)]
    np.testing.assert_allclose(got, want, rtol=1e-12)
    got = Rule("zscore", ("a", "b"), (2.0, 1.0))(scores)

    def z(v):
        return [(u - sum(v) / len(v)) / math.sqrt(sum((w - sum(v) / len(v)) ** 2 for w in v) / len(v))
                for u in v]

    za, zb = z(list(scores["a"])), z(list(scores["b"]))
    np.testing.assert_allclose(got, [2 * za[i] + zb[i] for i in range(30)], rtol=1e-10)
    with pytest.raises(ValueError, match="missing b"):
        Rule("logrank", ("a", "b"), (1.0, 1.0))({"a": scores["a"]})
    with pytest.raises(ValueError, match="must be one of"):
        Rule("mean", ("a",), (1.0,))


def test_calibration_drops_a_noise_metric_and_keeps_the_signals():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=300), rng.normal(size=300)
    target = a + 0.5 * b + 0.1 * rng.normal(size=300)
    scores = {"a": a, "b": b, "noise": rng.normal(size=300)}
    rule, tau = calibrate(scores, target, ("a", "b", "noise"), kind="zscore")
    assert rule.weights[2] == 0.0 and rule.weights[0] > rule.weights[1] > 0
    assert tau == pytest.approx(kendall_tau(rule(scores), target))
    assert tau > kendall_tau(a, target) + 0.05
    assert rule.to_json() == {"kind": "zscore", "metrics": ["a", "b", "noise"], "weights": list(rule.weights)}


def test_rules_load_by_name_or_json(tmp_path):
    from jaxnas.proxies.combine import NAMED, load_rule
    assert load_rule("aznas") is NAMED["aznas"]
    path = tmp_path / "rule.json"
    path.write_text('{"kind": "zscore", "metrics": ["params", "flops"], "weights": [1, 0.5]}')
    assert load_rule(str(path)) == Rule("zscore", ("params", "flops"), (1.0, 0.5))
    with pytest.raises(ValueError, match="neither a named rule"):
        load_rule("best")
    with pytest.raises(ValueError, match="no file"):
        load_rule(str(tmp_path / "missing.json"))
    path.write_text('{"kind": "zscore"}')
    with pytest.raises(ValueError, match="is not a rule"):
        load_rule(str(path))


def test_score_writes_the_rules_aggregate_over_every_scored_architecture(image_folder, tmp_path):
    """`jaxnas score` with proxy.rule: aggregate.csv is the rule over scores.csv's columns, and
    summary.json names the rule and its best architecture."""
    import csv
    import json

    from jaxnas.config import Config
    from jaxnas.proxies.run import score
    rule_path = tmp_path / "rule.json"
    rule_path.write_text('{"kind": "logrank", "metrics": ["params", "layers"], "weights": [1, 2]}')
    cfg = Config(data=str(image_folder), method="score").set({
        "proxy.names": "params", "proxy.rule": str(rule_path), "proxy.archs": "12", "proxy.batch_size": 8,
        "nb201.C": 4, "nb201.N": 1})
    summary = score(cfg, tmp_path / "run", progress=False)
    rows = list(csv.DictReader((tmp_path / "run" / "scores.csv").open()))
    agg = list(csv.DictReader((tmp_path / "run" / "aggregate.csv").open()))
    assert [r["arch"] for r in agg] == [r["arch"] for r in rows] and len(rows) == 12
    p, layers = [float(r["params"]) for r in rows], [float(r["layers"]) for r in rows]
    rp, rl = plain_ranks(p), plain_ranks(layers)
    want = [math.log(rp[i] / 12) + 2 * math.log(rl[i] / 12) for i in range(12)]
    np.testing.assert_allclose([float(r["aggregate"]) for r in agg], want, rtol=1e-12)
    assert summary["rule"]["weights"] == [1.0, 2.0]
    assert summary["rule"]["best"]["arch"] == rows[int(np.argmax(want))]["arch"]
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["rule"] == summary["rule"]


def test_fine_ranking_picks_the_most_accurate_of_the_top_k(image_folder, tmp_path):
    """proxy.fine_rank_top=k: the k best-scored candidates, in score order, each with a validation
    accuracy after its short training; the most accurate wins (ties: the better score). --method
    prune refuses it in one line."""
    import json

    from jaxnas import methods
    from jaxnas.config import Config
    from jaxnas.train.loop import SearchRun
    cfg = Config(data=str(image_folder), method="params").set({
        "nb201.C": 4, "nb201.N": 1, "eval.select_num": 6, "eval.batch_size": 16, "proxy.batch_size": 8,
        "proxy.fast_train_batch_size": 8, "proxy.fine_rank_top": 3, "proxy.fine_rank_steps": 2})
    res = SearchRun(cfg, tmp_path / "run", method_cls=methods.get("params"), progress=False).run()
    fine = res["fine_rank"]
    by_score = sorted(res["candidates"], key=lambda c: -c["score"])  # stable: first drawn on ties
    assert [c["arch"] for c in fine["candidates"]] == [c["arch"] for c in by_score[:3]] and fine["steps"] == 2
    accs = [c["val_acc"] for c in fine["candidates"]]
    assert res["arch"] == fine["candidates"][int(np.argmax(accs))]["arch"]
    assert all(0 <= a <= 1 for a in accs)
    assert json.loads((tmp_path / "run" / "result.json").read_text())["fine_rank"] == fine
    with pytest.raises(ValueError, match="ends at one cell"):
        SearchRun(cfg.replace(method="prune"), tmp_path / "prune", method_cls=methods.get("prune"),
                  progress=False)
