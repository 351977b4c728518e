"""ABS (jaxnas.methods.abs): operator scores, the dropping rule and the schedules, against plain
computations written here; the full run and its bit-exact resume across a shrink are in
tests/methods/test_method_contract.py (abs is a registered method).

Cost control: C=4, N=1 supernets; epoch_end is called directly on perturbed weights (no
training), so no training program is compiled here.
"""
from __future__ import annotations

import itertools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnas.config import Config
from jaxnas.methods.abs import ABS, drop_lowest, option_scores
from jaxnas.spaces import nb201
from jaxnas.spaces.nb201.angle import arch_angles

SMALL = {"nb201.C": 4, "nb201.N": 1, "train.epochs": 4, "method": "abs"}


def abs_method(**overrides) -> ABS:
    return ABS(Config().set({**SMALL, **overrides}), nb201.SPACE, 10)


def perturbed(state, seed=0):
    """The state with every weight moved by noise of a different scale per leaf (as if trained)."""
    leaves, tree = jax.tree.flatten(state.params)
    rng = np.random.default_rng(seed)
    moved = [x + jnp.asarray(rng.normal(0, rng.uniform(0.01, 0.2), x.shape), x.dtype) for x in leaves]
    return state.replace(params=jax.tree.unflatten(tree, moved))


def at_epoch(state, epoch):
    return state.replace(epoch=jnp.int32(epoch))


def loop_mean_per_op(values, archs):
    out = np.full((6, 5), np.nan)
    for e, o in itertools.product(range(6), range(5)):
        picked = [v for v, a in zip(values, archs) if a[e] == o]
        if picked:
            out[e, o] = sum(picked) / len(picked)
    return out


def test_option_scores_is_the_mean_per_operator():
    rng = np.random.default_rng(1)
    archs = rng.integers(0, 5, (40, 6))
    archs[:, 2] = np.where(archs[:, 2] == 4, 3, archs[:, 2])  # edge 2 never takes op 4
    values = rng.normal(size=40)
    got = option_scores(values, archs, 5)
    want = loop_mean_per_op(values, archs)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert np.isnan(got[2, 4])


def test_scores_of_a_shrunk_space_use_only_its_architectures():
    """The angle scores of a shrunk space: the mean over the architectures it still holds (24 here),
    as the reference's compute_scores; ops it dropped are unmeasured (NaN)."""
    m = abs_method()
    state = perturbed(m.init(), seed=5)
    allowed = np.zeros((6, 5), bool)
    allowed[np.arange(6), [3, 1, 2, 4, 0, 3]] = True
    allowed[[0, 0, 2, 3, 5], [2, 4, 0, 1, 1]] = True  # 3*1*2*2*1*2 = 24 architectures
    state = state.replace(space={"ops": jnp.asarray(allowed)})
    got = m.scores(state, None)
    every = nb201.enumerate_all()
    keep = [all(allowed[e, a[e]] for e in range(6)) for a in every]
    angles = np.asarray(arch_angles(state.method["theta0"], state.params, every))
    want = loop_mean_per_op(angles[keep], every[keep])
    assert sum(keep) == 24 and np.array_equal(np.isfinite(got), allowed)
    np.testing.assert_allclose(got[allowed], want[allowed], rtol=1e-6)


def test_drop_lowest_follows_the_reference_rule():
    scores = np.arange(30, dtype=float).reshape(6, 5)[::-1].copy()  # edge 5: 0..4, edge 4: 5..9, ...
    allowed, dropped = drop_lowest(scores, np.ones((6, 5), bool), 20)
    assert len(dropped) == 20 and allowed.sum() == 10 and allowed.sum(-1).min() >= 1
    # ascending order, skipping the last op of an edge: edges 5, 4, 3, 2 keep one op each (their
    # highest), then edge 1 loses its four lowest
    assert dropped[:5] == [(5, 0), (5, 1), (5, 2), (5, 3), (4, 0)]
    np.testing.assert_array_equal(allowed.sum(-1), [5, 1, 1, 1, 1, 1])
    for e in range(1, 6):
        assert allowed[e, 4]
    # NaN (unmeasured) is dropped last; already dropped ops are skipped; ties in (edge, op) order
    scores = np.zeros((6, 5))
    scores[0, 0] = np.nan
    mask = np.ones((6, 5), bool)
    mask[1, 1] = False
    allowed, dropped = drop_lowest(scores, mask, 3)
    assert dropped == [(0, 1), (0, 2), (0, 3)]
    allowed, dropped = drop_lowest(scores, mask, 29)
    assert allowed.sum(-1).tolist() == [1] * 6 and allowed[0, 0]  # the NaN op outlived its edge


def test_angle_shrink_drops_the_lowest_mean_angles():
    m = abs_method(**{"abs.shrink_after": 2})
    state = perturbed(m.init())
    theta0 = jax.tree.map(np.asarray, state.method["theta0"])
    same, _ = m.epoch_end(at_epoch(state, 0), None)  # epoch 1 of 4: not due
    assert np.asarray(same.space["ops"]).all() and int(same.method["dropped"]) == 0
    shrunk, metrics = m.epoch_end(at_epoch(state, 1), None)  # after epoch 2: the one-shot drop

    every = nb201.enumerate_all()
    with jax.enable_x64(True):  # the test's own angles, in float64
        p0 = jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), state.method["theta0"])
        p = jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), state.params)
        angles = np.asarray(arch_angles(p0, p, every))
    want = loop_mean_per_op(angles, every)
    np.testing.assert_allclose(np.asarray(metrics["abs_op_scores"], float), want, rtol=1e-4, atol=1e-6)
    ops = np.asarray(shrunk.space["ops"])
    assert ops.sum() == 10 and ops.sum(-1).min() >= 1 and int(shrunk.method["dropped"]) == 20
    assert len(metrics["abs_dropped"]) == 20 and metrics["abs_space_size"] == int(np.prod(ops.sum(-1)))
    # every dropped op scored no higher than every kept op of an edge that still had a choice
    dropped = {tuple(d) for d in metrics["abs_dropped"]}
    worst_dropped = max(want[e, o] for e, o in dropped)
    for e in range(6):
        if ops[e].sum() > 1:
            assert all(want[e, o] >= worst_dropped - 1e-6 for o in np.flatnonzero(ops[e]))
    for a, b in zip(jax.tree.leaves(shrunk.method["theta0"]), jax.tree.leaves(theta0)):
        assert np.array_equal(np.asarray(a), b)  # theta0 stays the exact initial weights
    # later epochs: no second shrink in one-shot mode; the base method samples the shrunk space
    again, _ = m.epoch_end(at_epoch(shrunk, 2), None)
    assert np.array_equal(np.asarray(again.space["ops"]), ops)
    sampled = np.asarray(nb201.SPACE.sample(jax.random.key(3), 200, shrunk.space))
    assert nb201.SPACE.allows(sampled, shrunk.space).all()


def test_progressive_schedule_and_theta0_reset():
    m = abs_method(**{"abs.schedule": "progressive", "abs.shrink_after": 1, "abs.per_stage": 4,
                      "abs.reset_after": 6, "abs.min_size": 8, "train.epochs": 10})
    state = perturbed(m.init())
    sizes, resets = [], []
    for epoch in range(8):
        state, metrics = m.epoch_end(at_epoch(state, epoch), None)
        sizes.append(int(np.prod(np.asarray(state.space["ops"]).sum(-1))))
        resets.append(bool(metrics.get("abs_theta0_reset", False)))
    # 4 ops per stage from epoch 1 on: 30 -> 26 -> 22 -> ... until at most min_size=8 architectures
    assert sizes[0] < 5 ** 6 and sizes == sorted(sizes, reverse=True) and sizes[-1] <= 8
    assert sizes[-2] == sizes[-1]  # stopped shrinking once small enough
    assert resets.count(True) == 1 and resets.index(True) == 1  # 8 > 6 dropped after the 2nd stage
    assert np.asarray(state.space["ops"]).sum(-1).min() >= 1


def test_magnitude_scores_are_setn_probabilities():
    m = abs_method(**{"abs.base": "setn", "abs.metric": "magnitude"})
    state = m.init()
    alpha = jax.random.normal(jax.random.key(4), (6, 5))
    state = state.replace(method={**state.method, "base": {**state.method["base"], "alpha": alpha}})
    np.testing.assert_allclose(m.scores(state, None), np.asarray(jax.nn.softmax(alpha, -1)), rtol=1e-6)


def test_bad_configurations_are_one_line_errors():
    with pytest.raises(ValueError, match="abs.metric=magnitude scores operators by SETN's alpha"):
        Config().set({"abs.metric": "magnitude"})
    with pytest.raises(ValueError, match="abs.base must be one of rsps, setn"):
        Config().set({"abs.base": "das"})
    with pytest.raises(ValueError, match="abs.schedule must be one of"):
        Config().set({"abs.schedule": "gradual"})


def test_search_run_reports_the_shrunk_space(image_folder, nb201_table_path, tmp_path, monkeypatch):
    """Through the one loop (the contract test's tiny configuration, so its programs are reused):
    a checkpoint before the shrink (unmeasured scores must still be saveable), the space shrinks
    after epoch 2 of 3, the result holds the surviving operators, every
    candidate the base method ranked lies in them, the operator scores are in metrics.jsonl, and
    the NB201 optimum's membership is reported against the table."""
    from jaxnas.bench import load_table
    from jaxnas.train.loop import SearchRun

    monkeypatch.setenv("JAXNAS_CACHE", str(tmp_path / "data-cache"))
    cfg = Config(data=str(image_folder), method="abs").set(
        {"nb201.C": 4, "nb201.N": 1, "train.batch_size": 16, "train.epochs": 3, "eval.select_num": 4,
         "eval.batch_size": 16, "abs.shrink_after": 2})
    table = load_table(nb201_table_path)
    result = SearchRun(cfg, tmp_path / "run", method_cls=ABS, progress=False, bench_table=table).run()
    kept = np.asarray(result["kept_ops"], bool)
    assert kept.sum() == 10 and kept.sum(-1).min() >= 1 and result["space_size"] == int(np.prod(kept.sum(-1)))
    state = {"ops": kept}
    cands = np.stack([nb201.from_string(c["arch"]) for c in result["candidates"]])
    assert nb201.SPACE.allows(cands, state).all() and nb201.SPACE.allows(nb201.from_string(result["arch"]),
                                                                         state)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    shrink = [r for r in rows if r.get("kind") == "epoch_end" and "abs_op_scores" in r]
    assert [r["epoch"] for r in shrink] == [1] and len(shrink[0]["abs_dropped"]) == 20
    column = "cifar10"  # the loop's name for the table column of a 10-class dataset
    every = nb201.enumerate_all()
    acc = table.values(every, column)
    keep = nb201.SPACE.allows(every, state)
    assert result["space_bench"] == {"column": column, "size": int(keep.sum()),
                                     "best_acc": float(acc[keep].max()),
                                     "optimum_acc": float(acc.max()),
                                     "optimum_kept": bool(keep[np.argmax(acc)])}
