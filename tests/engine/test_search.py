"""jaxnas.search: the selection rules against plain loops written here from their definitions
(Pareto dominance, the best under a budget), the one tie rule on crafted cases, dedup, take over a
pytree, the categorical top-k on a hand-made list, and `SupernetMethod.pick_best` over a dict of
arrays through a stand-in (no network is built or compiled)."""
from __future__ import annotations

import itertools
from types import SimpleNamespace

import jax.numpy as jnp
import numpy as np
import pytest

from jaxnas import search
from jaxnas.methods.base import SupernetMethod

# ------------------------------------------------------------------------------- references


def loop_front(obj, maximize):
    """Indices of the rows no other row dominates (at least as good everywhere, better somewhere)."""
    n, m = obj.shape

    def at_least(j, i, k):
        return obj[j, k] >= obj[i, k] if maximize[k] else obj[j, k] <= obj[i, k]

    def better(j, i, k):
        return obj[j, k] > obj[i, k] if maximize[k] else obj[j, k] < obj[i, k]

    return [i for i in range(n)
            if not any(all(at_least(j, i, k) for k in range(m)) and any(better(j, i, k) for k in range(m))
                       for j in range(n))]


def loop_best(acc, loss, among):
    return min(among, key=lambda i: (-acc[i], loss[i], i))


# ----------------------------------------------------------------------------------- tie rule


def test_best_and_order_tie_rule():
    acc = [0.5, 0.7, 0.7, 0.7, 0.1]
    loss = [0.1, 0.3, 0.2, 0.2, 0.0]
    assert search.best(acc, loss) == 2  # highest accuracy, then lower loss, then first
    assert search.order(acc, loss).tolist() == [2, 3, 1, 0, 4]
    assert search.best([np.nan, 0.2, 0.2], [0.0, 0.5, 0.5]) == 1  # NaN accuracy is the worst
    assert search.best([0.2, 0.2], [np.nan, 9.0]) == 1  # NaN loss is the worst
    with pytest.raises(ValueError, match="no candidates"):
        search.best([], [])
    rng = np.random.default_rng(0)
    acc, loss = rng.integers(0, 4, 200), rng.integers(0, 3, 200)
    assert search.order(acc, loss).tolist() == sorted(range(200), key=lambda i: (-acc[i], loss[i], i))


def test_order_by_score_and_top_k():
    scores = [1.0, np.nan, 3.0, 3.0, -np.inf, np.inf]
    assert search.order_by_score(scores).tolist() == [5, 2, 3, 0, 4, 1]  # NaN lowest, ties to the first
    assert search.best_by_score(scores) == 5
    assert search.best_by_score([np.nan, np.nan]) == 0
    assert search.top_k([1, 3, 3, 2], 2).tolist() == [1, 2]
    assert search.top_k(np.array([0, 255, 7, 255], np.uint8), 3).tolist() == [1, 3, 2]  # no wrap-around
    assert search.top_k([True, False, True], 5).tolist() == [0, 2, 1]  # k capped
    assert search.top_k([1.0, 2.0], 0).tolist() == []
    # the formula training_free ranked by before: the same order wherever no score is +-float max
    rng = np.random.default_rng(1)
    x = rng.integers(0, 5, 300).astype(np.float64)
    x[rng.random(300) < 0.2] = np.nan
    x[rng.random(300) < 0.05] = -np.inf
    old = np.lexsort((np.arange(len(x)), -np.nan_to_num(x, nan=-np.inf)))
    np.testing.assert_array_equal(search.order_by_score(x), old)


# ------------------------------------------------------------------------------------- Pareto
def loop_weak_front(obj, maximize):
    """NSE's filter (main.py:244-255): row i goes when another row is at least as good in every
    objective, except that of identical rows the first stays."""
    n, m = obj.shape

    def at_least(j, i, k):
        return obj[j, k] >= obj[i, k] if maximize[k] else obj[j, k] <= obj[i, k]

    return [i for i in range(n)
            if not any(j != i and all(at_least(j, i, k) for k in range(m))
                       and not (np.array_equal(obj[j], obj[i]) and j > i) for j in range(n))]



@pytest.mark.parametrize("maximize", [(True, True), (False, True), (True, False, True), (False, False, False),
                                      (True,)])
def test_pareto_front_equals_a_loop(maximize):
    rng = np.random.default_rng(len(maximize) * 7 + sum(maximize))
    for n in (1, 2, 17, 80):
        obj = rng.integers(0, 4, (n, len(maximize))).astype(np.float64)  # many ties and duplicates
        got = search.pareto_front(obj, maximize)
        assert got.tolist() == loop_front(obj, maximize)
        weak = search.pareto_front(obj, maximize, duplicates="first")
        assert weak.tolist() == loop_weak_front(obj, maximize)


def test_pareto_front_details():
    obj = np.array([[1.0, 5.0], [1.0, 5.0], [2.0, 4.0], [0.5, 1.0], [2.0, 6.0]])  # (cost, accuracy)
    assert search.pareto_front(obj, [False, True]).tolist() == [0, 1, 3, 4]  # duplicates all kept
    assert search.pareto_front(obj, [False, True], duplicates="first").tolist() == [0, 3, 4]  # NSE's rule
    assert search.pareto_front(obj, True).tolist() == [4]  # one flag for every objective
    assert search.pareto_front(np.zeros((0, 2)), [True, True]).tolist() == []
    with pytest.raises(ValueError, match="NaN"):
        search.pareto_front([[1.0, np.nan]], [True, True])
    with pytest.raises(ValueError, match="'all' or 'first'"):
        search.pareto_front(obj, True, duplicates="none")
    with pytest.raises(ValueError, match=r"\[n, m\]"):
        search.pareto_front([1.0, 2.0], [True])


# ------------------------------------------------------------------------------ under a budget


def test_best_under_budget_equals_a_loop():
    rng = np.random.default_rng(2)
    for trial in range(40):
        n = int(rng.integers(1, 40))
        cost, acc, loss = rng.integers(1, 6, n), rng.integers(0, 4, n), rng.integers(0, 3, n)
        budget = float(rng.integers(1, 6)) + (0.5 if trial % 2 else 0.0)
        fits = [i for i in range(n) if cost[i] <= budget]
        if not fits:
            with pytest.raises(ValueError, match=f"cheapest costs {float(cost.min())}"):
                search.best_under_budget(cost, acc, budget, loss)
            continue
        assert search.best_under_budget(cost, acc, budget, loss) == loop_best(acc, loss, fits)
        assert search.best_under_budget(cost, acc, budget) == loop_best(acc, np.zeros(n), fits)


def test_best_under_budget_nothing_fits():
    with pytest.raises(ValueError, match=r"budget 2\.0: the cheapest costs 3\.0"):
        search.best_under_budget([5.0, 3.0, np.nan], [0.9, 0.8, 0.7], 2.0)
    with pytest.raises(ValueError, match="no candidate has a cost"):
        search.best_under_budget([np.nan], [0.9], 2.0)


# ----------------------------------------------------------------------------- dedup and take


def test_dedup_keeps_first_occurrences_in_order():
    assert search.dedup(np.array([5, 3, 5, 7, 3, 3], np.int64)).tolist() == [0, 1, 3]
    assert search.dedup(np.array([[1, 2], [0, 0], [1, 2], [0, 1]])).tolist() == [0, 1, 3]  # rows
    assert search.dedup([]).tolist() == []
    rng = np.random.default_rng(3)
    h = rng.integers(0, 10, 100)
    assert search.dedup(h).tolist() == [i for i in range(100) if h[i] not in h[:i]]


def test_take_indexes_every_leaf():
    archs = {"ops": jnp.arange(12, dtype=jnp.int32).reshape(4, 3),
             "gates": {"on": np.array([1, 0, 1, 1], bool)}}
    one = search.take(archs, 2)
    assert isinstance(one["ops"], np.ndarray) and one["ops"].tolist() == [6, 7,
                                                                          8] and one["gates"]["on"].item()
    some = search.take(archs, np.array([3, 0]))
    assert some["ops"].tolist() == [[9, 10, 11], [0, 1, 2]] and some["gates"]["on"].tolist() == [True, True]
    assert search.take(np.arange(5) * 2, 4) == 8  # a plain array is a one-leaf pytree


# ---------------------------------------------------------------------------------- categorical


def test_categorical_top_k_on_a_given_list():
    logits = jnp.log(jnp.array([[0.5, 0.25, 0.25], [0.1, 0.6, 0.3]]))
    choices = np.array(list(itertools.product(range(3), range(3))), np.int32)  # 9, in product order
    p = np.exp(np.asarray(logits, np.float64))
    want = sorted(range(9), key=lambda i: (-round(p[0, choices[i, 0]] * p[1, choices[i, 1]], 6), i))
    archs, scores = (np.asarray(x) for x in search.categorical_top_k(logits, jnp.asarray(choices), 4))
    np.testing.assert_array_equal(archs, choices[want[:4]])  # ties (0.25 == 0.25) keep list order
    np.testing.assert_allclose(np.exp(scores), [p[0, c[0]] * p[1, c[1]] for c in archs], rtol=1e-5)
    allowed = np.array([[True, False, True], [False, True, True]])
    archs, _ = search.categorical_top_k(logits, jnp.asarray(choices), 100, allowed)
    assert len(archs) == 4 and np.asarray(allowed[[0, 1], np.asarray(archs)]).all()  # k capped at 2 * 2


# ------------------------------------------------------------------------------------ pick_best


class _Space:
    def to_string(self, arch) -> str:
        return f"{arch['ops'].tolist()}/{arch['bank']['mask'].astype(int).tolist()}"


class _Method(SupernetMethod):
    """A supernet method whose 'network' scores an architecture from its arrays (no build)."""

    def __init__(self):
        self.space, self.graphdef = _Space(), None

    init = train_step = select = None


def _evaluator(graphdef, params, stats, archs):
    a = archs.value  # rank wrapped the dict as a Choice of jax arrays
    assert isinstance(a["ops"], jnp.ndarray)
    acc = (a["ops"].sum(-1) % 3).astype(jnp.float32) / 4
    return {"acc": acc, "loss": 1 - a["bank"]["mask"].sum(-1).astype(jnp.float32) / 10}


def test_pick_best_over_a_pytree():
    ops = np.array([[0, 1], [2, 2], [1, 1], [1, 0], [0, 2]], np.int32)  # ops sum % 3: 1, 1, 2, 1, 2
    mask = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 0], [1, 0, 0], [1, 1, 1]], bool)
    archs = {"ops": ops, "bank": {"mask": mask}}
    state = SimpleNamespace(params=None, stats=None)
    res = _Method().pick_best(state, archs, _evaluator)
    assert res["arch"]["ops"].tolist() == [0, 2] and res["arch"]["bank"]["mask"].tolist() == [True, True,
                                                                                              True]
    assert res["valid_acc"] == 50.0 and res["valid_loss"] == pytest.approx(0.7)  # tie on acc: lower loss
    assert [c["arch"] for c in res["candidates"]] == [_Space().to_string(search.take(archs,
                                                                                     i)) for i in range(5)]
    assert [c["valid_acc"] for c in res["candidates"]] == [25.0, 25.0, 50.0, 25.0, 50.0]
