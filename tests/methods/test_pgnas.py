"""PGNAS on NB201 (jaxnas.methods.pgnas): the input-gated supernet, the regulariser of the whole
network, the genotype mapping and one training step, against plain computations written here. The
full run and its bit-exact resume are in tests/methods/test_method_contract.py (pgnas is registered).

Cost control: C=4, N=1 supernets, 8x8 images, eager forwards."""
from __future__ import annotations

import json
import math
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from helpers import build

from jaxnas.config import Config, preset
from jaxnas.estimate import estimate
from jaxnas.evaluate import Evaluator
from jaxnas.methods.pgnas import GATED_OPS, PGNAS, gate_values, one_op_probs, sample_one_op, to_genotype
from jaxnas.methods.rsps import RSPS
from jaxnas.nn import apply, split
from jaxnas.spaces import nb201
from jaxnas.spaces.arch import Choice, InputGates
from jaxnas.spaces.nb201.networks import NB201SuperNet

B, H = 6, 8


@pytest.fixture(scope="module")
def supernet():
    return split(build(lambda: NB201SuperNet(4, 1, 10, rngs=nnx.Rngs(0)), seed=3))


def images(seed=0):
    return jnp.asarray(np.random.default_rng(seed).normal(size=(B, H, H, 3)), jnp.float32)


def test_one_hot_input_gates_are_the_single_path(supernet):
    """0/1 input gates that keep one op per edge compute that architecture: in training mode for a
    gate set shared by the batch (the off ops see zeros; batch-statistics BN without affine outputs
    zeros), and per example in eval mode once the running means are 0 (eval-mode BN treats examples
    independently, but maps a dropped conv's zeros to -mean/std: the reference gates the input too)."""
    graphdef, params, stats = supernet
    x = images(1)
    archs = nb201.from_index(np.array([1835, 5, 15624, 7000, 3, 12345]))
    y = apply(graphdef, params, stats, x, InputGates(nb201.to_mask(archs[3])), train=True)[0]
    want = apply(graphdef, params, stats, x, Choice(jnp.asarray(archs[3])), train=True)[0]
    np.testing.assert_allclose(np.asarray(y), np.asarray(want), rtol=1e-5, atol=1e-5)
    shifted = apply(graphdef, params, stats, x, InputGates(nb201.to_mask(archs[3])), train=False)[0]
    assert not np.allclose(np.asarray(shifted), np.asarray(
        apply(graphdef, params, stats, x, Choice(jnp.asarray(archs[3])), train=False)[0]), atol=1e-3)
    stats = jax.tree_util.tree_map_with_path(
        lambda path, v: jnp.zeros_like(v) if getattr(path[-1], "key", None) == "mean" else v, stats)
    per_example = jnp.stack([nb201.to_mask(a) for a in archs])  # [B, 6, 5]
    y = apply(graphdef, params, stats, x, InputGates(per_example), train=False)[0]
    for i, a in enumerate(archs):
        want = apply(graphdef, params, stats, x, Choice(jnp.asarray(a)), train=False)[0]
        np.testing.assert_allclose(np.asarray(y[i]), np.asarray(want[i]), rtol=1e-5, atol=1e-5)


def test_relaxed_input_gates_scale_each_op_input(supernet):
    """Relaxed gates change the output, and gates given per example act on each example alone
    (eval mode): example i of a per-example call equals a call with example i's gates for all."""
    graphdef, params, stats = supernet
    x = images(2)

    def only(op, g):  # every edge: one op at gate g
        return jnp.zeros((6, 5)).at[:, op].set(g)

    for op in (nb201.SKIP, nb201.POOL):
        half = apply(graphdef, params, stats, x, InputGates(only(op, 0.5)), train=False)[0]
        assert not np.allclose(np.asarray(half), np.asarray(
            apply(graphdef, params, stats, x, InputGates(only(op, 1.0)), train=False)[0]))
    # per example: example i scaled by g_i through skips only is the network of the scaled input
    g = jnp.linspace(0.2, 1.0, B)
    gates = jnp.zeros((B, 6, 5)).at[:, :, nb201.SKIP].set(g[:, None])
    y = apply(graphdef, params, stats, x, InputGates(gates), train=False)[0]
    for i in range(B):
        # every cell's edges are skips: node j = sum of (gate * node) over its inputs
        want = apply(graphdef, params, stats, x, InputGates(gates[i]), train=False)[0]
        np.testing.assert_allclose(np.asarray(y[i]), np.asarray(want[i]), rtol=1e-5, atol=1e-5)


def small_method(**overrides):
    cfg = Config().set({"nb201.C": 4, "nb201.N": 1, "method": "pgnas", **overrides})
    data = types.SimpleNamespace(train_labels=np.zeros(1000, np.int32))
    return PGNAS(cfg, nb201.SPACE, 10, dataset=data)


def test_regulariser_of_the_network_equals_a_plain_sum():
    m = small_method(**{"pgnas.length_scale_sq": 7.0})
    state = m.init()
    p_logit = jax.random.normal(jax.random.key(1), (6, 4))
    assert m.n_train == 10 * 500  # 10x the weights half of 1000 training images
    assert small_method(**{"train.held_out": 0.1}).n_train == 10 * 900  # the split's weights part
    got = float(m.regulariser(state.params, p_logit))
    cells = [c for c in jax.device_get(state.params)["cells"].values() if "edges" in c]
    want = 0.0
    for e in range(6):
        for j, op in enumerate(GATED_OPS):
            p = 1 / (1 + math.exp(-float(p_logit[e, j])))
            w_sq = 0.0
            k = 0
            for c in cells:
                k += c["edges"][e]["conv1"]["conv"]["kernel"].shape[2]
                if op in (nb201.CONV1, nb201.CONV3):
                    w = np.asarray(c["edges"][e]["conv1" if op == nb201.CONV1 else "conv3"]["conv"]["kernel"],
                                   np.float64)
                    w_sq += float((w * w).sum())
            want += (7.0 / m.n_train * (1 - p) * w_sq
                     + k / m.n_train * (p * math.log(p) + (1 - p) * math.log(1 - p)))
    assert got == pytest.approx(want, rel=1e-5)


def test_genotype_projection_and_gate_values():
    keep = np.array([[0, 0, 0, 0], [1, 0, 0, 0], [0, 1, 1, 0], [1, 1, 1, 1], [0, 0, 0, 1], [0, 0, 1, 0]])
    keep_prob = np.tile([0.9, 0.5, 0.7, 0.6], (6, 1))
    np.testing.assert_array_equal(to_genotype(keep, keep_prob),
                                  [nb201.NONE, nb201.SKIP, nb201.CONV3, nb201.SKIP, nb201.POOL, nb201.CONV3])
    g = np.asarray(gate_values(jnp.asarray(keep, jnp.float32), jnp.zeros((6, 4)), rescale=False))
    assert g.shape == (6, 5) and (g[:, 0] == 0).all() and np.array_equal(g[:, 1:], keep)
    g = np.asarray(gate_values(jnp.asarray(keep, jnp.float32), jnp.zeros((6, 4)), rescale=True))  # p = 0.5
    np.testing.assert_allclose(g[:, 1:], 2.0 * keep)


def test_one_step_trains_weights_and_drop_logits_together():
    m = small_method(**{"train.batch_size": 8})
    state = m.init()
    x = jnp.asarray(np.random.default_rng(3).normal(size=(8, 16, 16, 3)), jnp.float32)
    y = jnp.arange(8) % 10
    new, metrics = jax.jit(m.train_step)(state, (x, y), None, 0.05)
    assert float(metrics["loss"]) == pytest.approx(float(metrics["ce"]) + float(metrics["regulariser"]),
                                                   rel=1e-6)
    moved = np.abs(np.asarray(new.method["p_logit"] - state.method["p_logit"]))
    assert moved.min() > 0  # every gate's drop logit learns

    def kernel(s):
        return np.asarray(s.params["cells"][0]["edges"][0]["conv3"]["conv"]["kernel"])

    assert not np.array_equal(kernel(new), kernel(state))
    # a different step draws different relaxed gates: the loss changes with the step's key
    _, again = jax.jit(m.train_step)(state.replace(step=jnp.int32(5)), (x, y), None, 0.05)
    assert float(again["ce"]) != float(metrics["ce"])


def test_plot_draws_the_candidate_histograms(tmp_path):
    from jaxnas.methods.pgnas import _summary
    from jaxnas.plot import plot_run

    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "loss": 2.0, "acc": 10.0, "lr": 0.1}\n')
    result = {"arch": "x", "candidates_acc": _summary([20.0, 22.5, 30.0]),
              "fixed_rate_acc": _summary([10.0, 12.0])}
    assert result["candidates_acc"]["histogram"][4] == 2 and result["candidates_acc"]["values"] == [20.0,
                                                                                                    22.5,
                                                                                                    30.0]
    (tmp_path / "result.json").write_text(json.dumps(result))
    paths = plot_run(tmp_path)
    assert (tmp_path / "plots" / "candidates.png" in paths
            and (tmp_path / "plots" / "candidates.png").stat().st_size)


def test_ranked_genotypes_draw_kept_ops_and_are_ranked_with_the_shared_weights():
    """genotype=ranked: each candidate gives one genotype whose op on every edge it kept (`none`
    where it kept nothing), duplicates removed; the pick is the best of those single paths."""
    keep = np.array([[[1, 1, 0, 0]] * 6, [[0, 0, 0, 0]] * 3 + [[0, 0, 1, 0]] * 3, [[1, 1, 0, 0]] * 6])
    archs = PGNAS._kept_paths(jax.random.key(0), keep)
    assert len(np.unique(archs, axis=0)) == len(archs) <= 3
    ops = np.asarray(GATED_OPS)
    for a in archs:
        assert ((a == nb201.NONE) | np.isin(a, ops)).all()
    assert any((a[:3] == nb201.NONE).all() and (a[3:] == nb201.CONV3).all() for a in archs)
    assert all(np.isin(a, ops[:2]).all() for a in archs if not (a[:3] == nb201.NONE).all())
    m = small_method(**{"pgnas.genotype": "ranked", "pgnas.candidates": 4})
    state = m.init()
    x = jnp.asarray(np.random.default_rng(5).normal(size=(16, H, H, 3)), jnp.float32)
    evaluator = Evaluator(x, jnp.arange(16) % 10, chunk_size=4)
    res = m.select(state, evaluator)
    assert res["genotype_mapping"] == "ranked" and 1 <= res["ranked_genotypes"] <= 4
    single = m.pick_best(state, nb201.validate(res["arch"])[None], evaluator)
    assert single["valid_acc"] == res["valid_acc"]


def test_gates_per_cell_feed_each_cell_its_own(supernet):
    """InputGates [3N, 6, 5]: cell c reads gates[c]; against the modules composed by hand."""
    graphdef, params, stats = supernet
    x = images(6)
    archs = nb201.from_index(np.array([1835, 15624, 7000]))
    gates = jnp.stack([nb201.to_mask(a) for a in archs])  # [3, 6, 5]: one cell per stage at N=1
    y = apply(graphdef, params, stats, x, InputGates(gates), train=True)[0]
    net = nnx.merge(graphdef, params, stats, copy=True)
    h, c = net.stem(x, True), 0
    for module in net.cells:
        if isinstance(module, nb201.networks.ResNetBlock):
            h = module(h, True)
        else:
            h, c = module(h, gates[c], "input_gates", True, None), c + 1
    np.testing.assert_allclose(np.asarray(y), np.asarray(net.head(h, True)), rtol=1e-5, atol=1e-5)
    same = apply(graphdef, params, stats, x, InputGates(jnp.stack([gates[1]] * 3)), train=True)[0]
    np.testing.assert_allclose(np.asarray(same), np.asarray(
        apply(graphdef, params, stats, x, InputGates(gates[1]), train=True)[0]), rtol=1e-5, atol=1e-5)


def test_per_cell_regulariser_projection_and_selection():
    m = small_method(**{"pgnas.per_cell": True, "pgnas.candidates": 4, "pgnas.length_scale_sq": 5.0})
    state = m.init()
    assert state.method["p_logit"].shape == (3, 6, 4)
    p_logit = jax.random.normal(jax.random.key(4), (3, 6, 4))
    cells = [c for c in jax.device_get(state.params)["cells"].values() if "edges" in c]
    want = 0.0
    for ci, cell in enumerate(cells):
        for e in range(6):
            for j, op in enumerate(GATED_OPS):
                p = 1 / (1 + math.exp(-float(p_logit[ci, e, j])))
                k = cell["edges"][e]["conv1"]["conv"]["kernel"].shape[2]
                w_sq = 0.0
                if op in (nb201.CONV1, nb201.CONV3):
                    name = "conv1" if op == nb201.CONV1 else "conv3"
                    w = np.asarray(cell["edges"][e][name]["conv"]["kernel"], np.float64)
                    w_sq = float((w * w).sum())
                want += (5.0 / m.n_train * (1 - p) * w_sq
                         + k / m.n_train * (p * math.log(p) + (1 - p) * math.log(1 - p)))
    assert float(m.regulariser(state.params, p_logit)) == pytest.approx(want, rel=1e-5)
    # per edge the op kept in the most cells; ties by the mean keep probability
    keep = np.zeros((3, 6, 4))
    keep[:, :, 0] = [[1] * 6, [1] * 6, [0] * 6]      # skip kept in 2 cells
    keep[:, :, 2] = [[1] * 6, [0] * 6, [1] * 6]      # conv3 in 2 cells too: the tie goes to conv3 below
    keep_prob = np.tile([0.5, 0.5, 0.9, 0.5], (3, 6, 1))
    np.testing.assert_array_equal(m.gates.project(keep, keep_prob), [nb201.CONV3] * 6)
    assert not m.gates.exact(keep[None])[0] and m.gates.exact(np.stack([np.eye(4)[[0, 1, 2, 3, 0,
                                                                                   1]]] * 3)[None])[0]
    x = jnp.asarray(np.random.default_rng(7).normal(size=(16, H, H, 3)), jnp.float32)
    res = m.select(state, Evaluator(x, jnp.arange(16) % 10, chunk_size=4))
    assert res["per_cell"] and np.asarray(res["mask"]).shape == (3, 6, 4) and len(res["arch"]) == 6


def plain_one_op_probs(p_logit) -> np.ndarray:
    """Per edge, P(outcome | at most one kept op per edge, the same outcome in every cell) for the 5
    outcomes (none, then one kept op, in GATED_OPS order), from the independent Bernoulli gates."""
    p_logit = np.asarray(p_logit, np.float64)
    cells = p_logit if p_logit.ndim == 3 else p_logit[None]
    out = np.zeros((6, 5))
    for e in range(6):
        for outcome in range(5):  # 0: nothing kept; 1 + i: only op i kept
            prob = 1.0
            for cell in cells:
                for j in range(4):
                    p = 1 / (1 + math.exp(-cell[e, j]))
                    prob *= (1 - p) if outcome == 1 + j else p
            out[e, outcome] = prob
        out[e] /= out[e].sum()
    return out


@pytest.mark.parametrize("per_cell", [False, True])
def test_one_op_draw_is_the_conditioned_posterior(per_cell):
    """genotype=rejection's draw: the posterior conditioned on at most one kept op per edge (and the
    same op in every cell), against a plain computation over the 5 outcomes per edge; the sampler's
    frequencies match it, and its keep-masks are the drawn genotypes."""
    shape = (3, 6, 4) if per_cell else (6, 4)
    p_logit = np.asarray(jax.random.normal(jax.random.key(3), shape), np.float32) - 1.5
    want = plain_one_op_probs(p_logit)
    np.testing.assert_allclose(one_op_probs(p_logit), want, rtol=1e-9)
    np.testing.assert_allclose(one_op_probs(np.full((6, 4), math.log(0.1 / 0.9))),
                               np.tile([1 / 37] + [9 / 37] * 4, (6, 1)), rtol=1e-9)  # p = 0.1: 9 : 1
    archs = sample_one_op(jax.random.key(0), p_logit, 40000)
    assert archs.dtype == np.int32 and archs.shape == (40000, 6)
    freq = np.stack([np.bincount(archs[:, e], minlength=5) for e in range(6)]) / len(archs)
    np.testing.assert_allclose(freq, want, atol=0.01)  # binomial sd <= 0.0025
    m = small_method(**{"pgnas.per_cell": per_cell})
    archs, keep = m.gates.one_op_draw(jax.random.key(1), p_logit, 8)
    assert keep.shape == (8, *shape) and m.gates.exact(keep).all()
    for a, k in zip(archs, keep):
        np.testing.assert_array_equal(to_genotype(m.gates.any_cell(k), np.ones((6, 4))), a)


def test_rejection_draws_from_the_conditioned_posterior():
    """genotype=rejection at p = 0.1, where hardly one ordinary candidate in 10^15 keeps at most one op
    per edge, no longer fails: its candidates come from the conditioned posterior, evaluated as masks;
    the pick is the genotype of the best mask, and the ordinary pool's record stays."""
    m = small_method(**{"pgnas.genotype": "rejection", "pgnas.candidates": 4})
    state = m.init()
    x = jnp.asarray(np.random.default_rng(5).normal(size=(16, H, H, 3)), jnp.float32)
    res = m.select(state, Evaluator(x, jnp.arange(16) % 10, chunk_size=4))
    assert res["genotype_mapping"] == "rejection" and res["exact_genotype"]
    rej = res["rejection"]
    assert rej["draw"] == "conditional" and rej["candidates"] == 4 and len(rej["acc"]["values"]) == 4
    assert res["valid_acc"] == pytest.approx(rej["acc"]["max"], abs=1e-3)
    mask = np.asarray(res["mask"])
    assert mask.shape == (6, 4) and (mask.sum(-1) <= 1).all()
    np.testing.assert_array_equal(to_genotype(mask, np.ones((6, 4))), res["arch"])
    assert res["one_op_per_edge_candidates"] == 0 and len(res["candidates_acc"]["values"]) == 4
    assert "pair_valid_acc" in res and len(res["fixed_rate_acc"]["values"]) == 4


# seconds of the tiny preset's pgnas runs on 2 cores (nb201: genotype=ranked), the fastest of three
# timed runs on a shared VM (BENCHMARKS.md section 13; 344 s and 143 s under load average ~5)
MEASURED_TINY_S = {"nb201": 138.0, "hybrid": 88.0}


@pytest.mark.parametrize("space", ["nb201", "hybrid"])
def test_estimate_of_pgnas_runs(space):
    """The estimate of a tiny pgnas run (its own cost model: gated steps, candidate evaluations) is
    within a factor 3 of the measured time; the single-path model of the other methods is unchanged."""
    cfg = preset("tiny", "pgnas", space).replace(data="cifar10").set({"pgnas.genotype": "ranked"})
    est = estimate(cfg, method=PGNAS)
    assert est["steps"] == 230 and MEASURED_TINY_S[space] / 3 < est["seconds"] < 3 * MEASURED_TINY_S[space]
    rsps = preset("tiny", "rsps").replace(data="cifar10")
    assert estimate(rsps, method=RSPS)["seconds"] == pytest.approx(5.04)
