"""SETN: the evaluator's Adam against PyTorch, log-probabilities and top-K over the whole space,
the evaluator update on a problem with a known answer, candidate selection against a Python loop,
and one end-to-end search.

Cost control: every network here is C=4, N=1 with 10 classes; the selection test and the search
rank 4 candidates on 16 images of 32x32, so they share one compiled evaluation program.
"""
from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnas.bench import load_table, rank_summary
from jaxnas.checkpoint import Checkpointer
from jaxnas.config import Config
from jaxnas.evaluate import Evaluator
from jaxnas.methods import SETN, get
from jaxnas.methods import setn as setn_lib
from jaxnas.nn import apply, loss_and_accuracy
from jaxnas.search import categorical_log_prob as log_prob
from jaxnas.search import categorical_sample as sample
from jaxnas.spaces import nb201
from jaxnas.spaces.arch import Choice, Weights
from jaxnas.train.loop import RANK_PROBE_SEED, SearchRun
from jaxnas.train.optim import adam_l2
from jaxnas.train.state import select_key

SPACE = nb201.SPACE

NUM_CLASSES = 10
SMALL = {"method": "setn", "nb201.C": 4, "nb201.N": 1, "train.batch_size": 16, "eval.select_num": 4,
         "eval.batch_size": 16}


def top_k(alpha, k, allowed=None):
    return setn_lib.top_k(alpha, k, allowed, space=nb201.SPACE)


def small(extra=None) -> Config:
    return Config().set({**SMALL, **(extra or {})})


def loop_log_prob(alpha, archs):
    """sum_e log_softmax(alpha)[e, arch[e]], one architecture at a time, in float64."""
    a = np.asarray(alpha, np.float64)
    logp = a - np.log(np.exp(a).sum(-1, keepdims=True))
    return np.array([sum(logp[e, arch[e]] for e in range(nb201.NUM_EDGES)) for arch in np.asarray(archs)])


# --------------------------------------------------------------------------------------- optimizer


def test_adam_l2_equals_torch_adam():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    p0 = rng.normal(size=(6, 5)).astype(np.float32)
    grads = [rng.normal(size=(6, 5)).astype(np.float32) for _ in range(3)]

    tp = torch.nn.Parameter(torch.tensor(p0))
    opt = torch.optim.Adam([tp], lr=3e-4, betas=(0.5, 0.999), weight_decay=1e-3)
    tx = adam_l2(3e-4, 0.5, 0.999, 1e-3)
    params = {"alpha": jnp.asarray(p0)}
    opt_state = tx.init(params)
    for g in grads:
        tp.grad = torch.tensor(g)
        opt.step()
        updates, opt_state = tx.update({"alpha": jnp.asarray(g)}, opt_state, params)
        params = jax.tree.map(lambda p, u: p + u, params, updates)
        np.testing.assert_allclose(np.asarray(params["alpha"]), tp.detach().numpy(), rtol=0, atol=1e-7)
    # decoupled decay (AdamW) would differ by lr * wd * p per step: far above the tolerance
    assert np.abs(np.asarray(params["alpha"]) - p0).max() > 5e-4


def test_config_hyperparameters_reach_the_optimizer():
    m = SETN(small({"setn.arch_lr": 0.01, "setn.arch_weight_decay": 0.0}), SPACE, NUM_CLASSES)
    st = m.init()
    updates, _ = m.arch_tx.update(jnp.ones((6, 5)), st.method["alpha_opt"], st.method["alpha"])
    np.testing.assert_allclose(np.asarray(updates), -0.01, rtol=1e-5)  # Adam's first step: -lr*sign


# ------------------------------------------------------------------------------- log-prob and top-K


def test_log_prob_matches_a_loop():
    alpha = jax.random.normal(jax.random.key(0), (6, 5))
    archs = np.asarray(nb201.sample(jax.random.key(1), 50))
    np.testing.assert_allclose(np.asarray(log_prob(alpha, jnp.asarray(archs))), loop_log_prob(alpha, archs),
                               rtol=1e-5, atol=1e-5)
    assert log_prob(alpha, jnp.asarray(archs[0])).shape == ()


def test_top_k_over_the_whole_space_equals_sorting_the_loop():
    alpha = 2.0 * jax.random.normal(jax.random.key(2), (6, 5))
    every = nb201.enumerate_all()
    ref = loop_log_prob(alpha, every)
    archs, scores = top_k(alpha, 100)
    archs, scores = np.asarray(archs), np.asarray(scores)
    order = np.argsort(-ref, kind="stable")[:100]
    np.testing.assert_allclose(scores, ref[order], rtol=1e-5, atol=1e-5)
    # same architectures, ties aside: compare against the loop's values, not its order
    np.testing.assert_allclose(loop_log_prob(alpha, archs), ref[order], rtol=1e-5, atol=1e-5)
    assert len({tuple(a) for a in archs}) == 100
    np.testing.assert_array_equal(archs[0], np.asarray(alpha).argmax(-1))
    assert np.all(np.diff(scores) <= 1e-6)
    assert np.asarray(top_k(alpha, 10**6)[0]).shape == (nb201.NUM_ARCHS, 6)  # K capped at the space


def test_candidates_respect_a_shrunk_space():
    """With a space state that drops ops (ABS), top-K and sampling pick only what it keeps; with
    the full state they are exactly the unconstrained candidates."""
    alpha = 2.0 * jax.random.normal(jax.random.key(6), (6, 5))
    ops = np.ones((6, 5), bool)
    ops[:, nb201.NONE] = False
    ops[0] = [False, False, False, True, False]
    every = nb201.enumerate_all()
    ref = np.where(SPACE.allows(every, {"ops": ops}), loop_log_prob(alpha, every), -np.inf)
    archs, scores = (np.asarray(x) for x in top_k(alpha, 50, ops))
    assert SPACE.allows(archs, {"ops": ops}).all() and (archs[:, 0] == nb201.CONV3).all()
    np.testing.assert_allclose(scores, np.sort(ref)[::-1][:50], rtol=1e-5, atol=1e-5)
    assert len(np.asarray(top_k(alpha, 10**6, ops)[0])) == 4**5  # capped at what the space keeps
    full = np.ones((6, 5), bool)
    np.testing.assert_array_equal(np.asarray(top_k(alpha, 30, full)[0]), np.asarray(top_k(alpha, 30)[0]))
    key = jax.random.key(7)
    drawn = np.asarray(sample(key, alpha, 500, ops))
    assert SPACE.allows(drawn, {"ops": ops}).all()
    np.testing.assert_array_equal(np.asarray(sample(key, alpha, 500, full)),
                                  np.asarray(sample(key, alpha, 500)))


def test_sample_follows_the_evaluator_distribution():
    alpha = jnp.asarray(np.log(np.tile([0.05, 0.1, 0.15, 0.3, 0.4], (6, 1))), jnp.float32)
    draws = np.asarray(sample(jax.random.key(3), alpha, 4000))
    assert draws.shape == (4000, 6) and draws.dtype == np.int32
    freq = np.stack([np.bincount(draws[:, e], minlength=5) / 4000 for e in range(6)])
    np.testing.assert_allclose(freq, np.asarray(jax.nn.softmax(alpha, -1)), atol=0.03)


# ------------------------------------------------------------------------------------- the state


def test_init_state_holds_alpha_and_its_adam_state():
    m = SETN(small({"seed": 3}), SPACE, NUM_CLASSES)
    st = m.init()
    alpha = np.asarray(st.method["alpha"])
    assert alpha.shape == (6, 5) and 0 < np.abs(alpha).max() < 5e-3  # 1e-3 * N(0, 1)
    again = SETN(small({"seed": 3}), SPACE, NUM_CLASSES).init().method["alpha"]
    other = SETN(small({"seed": 4}), SPACE, NUM_CLASSES).init().method["alpha"]
    np.testing.assert_array_equal(alpha, np.asarray(again))
    assert not np.array_equal(alpha, np.asarray(other))
    assert len(jax.tree.leaves(st.method["alpha_opt"])) == 3  # count, mu, nu
    assert get("setn") is SETN
    with pytest.raises(ValueError, match="setn.select"):
        SETN(small({"setn.select": "best"}), SPACE, NUM_CLASSES)


# ----------------------------------------------------------------------- the evaluator's update


def _known_answer_state(method):
    """Weights for which the answer is known: every cell convolution and ResNet shortcut is zero.

    Then nor_conv_1x1 / nor_conv_3x3 output BN(0) = 0 like `none`, so each edge computes
    s * x + p * Pool(x) (s, p: the softmax weights of skip and pool) and each cell is a linear
    filter in {I, Pool}; everything after a cell (ReLU-conv-BN residual, BN head) is invariant to
    its scale, so only the *shape* of that filter matters. The classifier is scaled up so the
    teacher's labels are confident.
    """
    st = method.init()

    def edit(path, v):
        keys = [getattr(k, "key", None) for k in path]
        if "edges" in keys or "shortcut" in keys:
            return jnp.zeros_like(v)
        if "classifier" in keys and keys[-1] == "kernel":
            return 10.0 * v
        return v

    return st.replace(params=jax.tree_util.tree_map_with_path(edit, st.params))


def test_evaluator_moves_alpha_toward_the_op_with_lower_loss():
    """Labels from the all-skip network (no smoothing) or the all-pool network (heavy smoothing);
    the mixture starts near uniform. Known answer: with all-skip labels the smoothing op must lose
    probability; with all-pool labels it must gain it, on every edge. Same weights, same images:
    only the labels decide which way alpha moves."""
    m = SETN(small(), SPACE, NUM_CLASSES)
    st = _known_answer_state(m)
    x = jax.random.normal(jax.random.key(100), (32, 8, 8, 3))
    teacher_logits = jax.jit(lambda p, s, w: apply(m.graphdef, p, s, x, Weights(w), train=True)[0])
    step = jax.jit(m.arch_step)
    moved = {}
    for op in (nb201.SKIP, nb201.POOL):
        logits = teacher_logits(st.params, st.stats, nb201.to_mask(np.full(6, op)))
        labels = logits.argmax(-1)
        s, losses = st, []
        for _ in range(5):
            s, metrics = step(s, x, labels)
            losses.append(float(metrics["arch_loss"]))
        assert losses[-1] < losses[0], (nb201.OPS[op], losses)
        # the shared weights and their optimizer are untouched by the evaluator step
        for a, b in zip(jax.tree.leaves(st.params), jax.tree.leaves(s.params)):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        moved[op] = np.asarray(jax.nn.softmax(s.method["alpha"], -1) - jax.nn.softmax(st.method["alpha"], -1))

    skip_run, pool_run = moved[nb201.SKIP], moved[nb201.POOL]
    POOL, SKIP = nb201.POOL, nb201.SKIP
    # all-skip labels: pool loses probability on every edge, and loses the most on average
    assert np.all(skip_run[:, POOL] < 0), skip_run
    assert skip_run.mean(0).argmin() == POOL, skip_run.mean(0)
    # ... and on the direct input->output edge (3<-0) skip gains the most
    assert skip_run[nb201.EDGES.index((3, 0))].argmax() == SKIP, skip_run
    # all-pool labels: pool gains probability on every edge and gains the most on average
    assert np.all(pool_run[:, POOL] > 0), pool_run
    assert pool_run.mean(0).argmax() == POOL, pool_run.mean(0)
    # the preference between the two ops flips with the labels
    assert (skip_run[:, SKIP] - skip_run[:, POOL]).mean() > 0 > (pool_run[:, SKIP] - pool_run[:, POOL]).mean()


def test_host_train_step_equals_the_traced_one():
    """The CPU default (`eager`: weight step and evaluator step outside jit, jaxnas.spaces.nb201.eager) gives
    the state of the traced step (`merged`, one jitted train_step): weights, BN statistics, momentum,
    alpha and its Adam state, and the metrics."""
    x = jax.random.normal(jax.random.key(7), (2, 16, 8, 8, 3))
    y = jnp.asarray(np.arange(32).reshape(2, 16) % NUM_CLASSES)
    out = {}
    for impl in ("eager", "merged"):
        m = SETN(small({"nb201.single_path_impl": impl}), SPACE, NUM_CLASSES)
        assert m.host_step == (impl == "eager")

        def step(s):
            return m.train_step(s, (x[0], y[0]), (x[1], y[1]), 0.05)  # noqa: B023  (used in this iteration)

        s, metrics = step(m.init().replace(step=jnp.int32(3))) if m.host_step else jax.jit(step)(
            m.init().replace(step=jnp.int32(3)))
        out[impl] = jax.device_get((s.params, s.stats, s.opt_state, s.method, metrics))
    leaves_e, leaves_t = jax.tree.leaves(out["eager"]), jax.tree.leaves(out["merged"])
    assert len(leaves_e) == len(leaves_t)
    for a, b in zip(leaves_e, leaves_t):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    assert not np.allclose(out["eager"][3]["alpha"], SETN(small(), SPACE, NUM_CLASSES).init().method["alpha"])


# -------------------------------------------------------------------------------------- selection


def _eval_context(seed=0):
    kx, ky = jax.random.split(jax.random.key(seed))
    return Evaluator(jax.random.normal(kx, (16, 32, 32, 3)), jax.random.randint(ky, (16,), 0, NUM_CLASSES))


@pytest.mark.parametrize("mode", ["topk", "sample"])
def test_selection_equals_a_python_loop(mode):
    m = SETN(small({"setn.select": mode}), SPACE, NUM_CLASSES)
    st = m.init()
    st = st.replace(method={**st.method, "alpha": jax.random.normal(jax.random.key(5), (6, 5))})
    ctx = _eval_context()
    alpha = st.method["alpha"]

    archs = m.candidates(st)
    if mode == "topk":
        every = nb201.enumerate_all()
        ref = loop_log_prob(alpha, every)
        np.testing.assert_array_equal(archs, every[np.argsort(-ref, kind="stable")[:4]])
    else:
        np.testing.assert_array_equal(archs, np.asarray(sample(select_key(st), alpha, 4)))

    best = m.select(st, ctx)
    fwd = jax.jit(lambda p, s, x, a: apply(m.graphdef, p, s, x, Choice(a), train=True)[0])
    loop = []
    for a in archs:  # eval_bn="batch": batch statistics, i.e. a training-mode forward
        loss, acc = loss_and_accuracy(fwd(st.params, st.stats, ctx.images, jnp.asarray(a)), ctx.labels)
        loop.append((100 * float(acc), float(loss)))  # result files hold percent
    got = [(c["valid_acc"], c["valid_loss"]) for c in best["candidates"]]
    assert [c["arch"] for c in best["candidates"]] == [nb201.to_string(a) for a in archs]
    np.testing.assert_allclose(np.asarray(got)[:, 0], np.asarray(loop)[:, 0], rtol=1e-5, atol=1e-3)  # acc, %
    np.testing.assert_allclose(np.asarray(got)[:, 1], np.asarray(loop)[:, 1], rtol=1e-5, atol=1e-5)  # loss
    want = min(range(len(loop)), key=lambda i: (-loop[i][0], loop[i][1], i))
    np.testing.assert_array_equal(best["arch"], archs[want])
    assert best["valid_acc"] == pytest.approx(loop[want][0])
    assert best["valid_loss"] == pytest.approx(loop[want][1], rel=1e-5)
    assert best["log_prob"] == pytest.approx(float(loop_log_prob(alpha, [archs[want]])[0]), abs=1e-5)

    same, row = m.epoch_end(st, ctx)
    assert same is st  # selection leaves the state alone
    assert row["selected_arch"] == nb201.to_string(best["arch"])
    assert row["selected_valid_acc"] == pytest.approx(best["valid_acc"])


# ------------------------------------------------------------------------------------- end to end


def test_search_end_to_end(image_folder, nb201_table_path, tmp_path, monkeypatch):
    monkeypatch.setenv("JAXNAS_CACHE", str(tmp_path / "data-cache"))
    cfg = small({"data": str(image_folder), "train.epochs": 1, "max_per_class": 12, "eval.rank_probe": 6})
    table = load_table(nb201_table_path)
    run = SearchRun(cfg, tmp_path / "run", method_cls=SETN, progress=False, bench_table=table)
    start = jax.device_get(run.method.init())
    result = run.run()

    saved = json.loads((tmp_path / "run" / "result.json").read_text())
    assert saved["method"] == "setn" and saved["arch"] == result["arch"]
    nb201.from_string(saved["arch"])
    assert saved["steps"] == run.steps_per_epoch == 3  # 60 weight-half images / batch 16
    assert len(saved["candidates"]) == 4 and np.asarray(saved["arch_probs"]).shape == (6, 5)
    rows = [json.loads(ln) for ln in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    ends = [r for r in rows if r.get("kind") == "epoch_end"]
    assert [r["epoch"] for r in ends] == [0]
    assert ends[0]["selected_arch"] == saved["arch"]  # same state at the last epoch end and finish
    assert 0.0 <= ends[0]["selected_valid_acc"] <= 100.0  # percent
    steps = [r for r in rows if "arch_loss" in r]
    assert steps and all(np.isfinite(r["arch_loss"]) and np.isfinite(r["loss"]) for r in steps)

    # the checkpoint holds alpha and its Adam state; alpha moved (3 steps of ~lr each)
    ckpt = Checkpointer(tmp_path / "run" / "checkpoints")
    try:
        state = jax.device_get(ckpt.restore_latest(start))
    finally:
        ckpt.close()
    assert int(state.step) == 3 and int(state.method["alpha_opt"][1].count) == 3
    moved = np.abs(np.asarray(state.method["alpha"]) - np.asarray(start.method["alpha"]))
    assert 1e-4 < moved.max() <= 3 * 3e-4 * 1.2  # Adam's |step| <= ~lr
    probs = np.asarray(jax.nn.softmax(state.method["alpha"], -1))
    np.testing.assert_allclose(saved["arch_probs"], probs, atol=1e-6)

    # rank_probe: the same 6 seeded architectures for every run, ranked with the final shared weights
    probe = saved["rank_probe"]
    idx = np.sort(np.random.default_rng(RANK_PROBE_SEED).choice(nb201.NUM_ARCHS, 6, replace=False))
    assert probe["index"] == idx.tolist() and probe["column"] == "cifar10"
    again = jax.device_get(run.method.rank(run.state, jnp.asarray(nb201.from_index(idx)), run.evaluator))
    np.testing.assert_allclose(probe["valid_acc"], 100 * np.asarray(again["acc"]), rtol=1e-6)  # percent
    want = rank_summary(np.asarray(again["acc"]), table.values(nb201.from_index(idx), "cifar10"))
    assert probe["n"] == 6 and probe["kendall_tau"] == pytest.approx(want["kendall_tau"], nan_ok=True)


def test_registered_for_the_cli():
    from jaxnas.config import PRESETS, apply_overrides
    cfg = apply_overrides(PRESETS["tiny"].replace(method="setn"), ["setn.select=sample"])
    assert get(cfg.method) is SETN and cfg.setn.select == "sample"
    with pytest.raises(ValueError, match="setn.select must be one of topk, sample"):
        apply_overrides(cfg, ["setn.select=all"])
