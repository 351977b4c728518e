"""The TE-NAS-style pruning search (jaxnas.methods.prune) and the mixed cells it scores.

The loop is checked on scores whose outcome is known in closed form (an additive score prunes every
edge independently); the mixed-cell scores against the single-architecture scorer (a one-op cell
is that architecture) and against plain counts of the ops a mask keeps. The method's run, resume
and result go through test_method_contract (`prune` is registered). Cost: one scorer at C=4, N=1,
8 images of 8x8, forward proxies only (~15 s, mostly compiles).
"""
import jax
import numpy as np
import pytest

from jaxnas.methods.prune import prune
from jaxnas.proxies import ProxyScorer
from jaxnas.spaces import nb201
from jaxnas.spaces.arch import Gates
from jaxnas.spaces.nb201 import cell as nb
from jaxnas.spaces.nb201 import cost

C, N, B, H = 4, 1, 8, 8
START = np.ones((6, 5), bool)
START[:, nb.NONE] = False


def test_an_additive_score_keeps_each_edges_cheapest_op_after_one_removal_per_edge_per_round():
    w = np.random.default_rng(0).normal(size=(6, 5))
    seen = []

    def score(masks):  # a cell is better the less weight it keeps: the heaviest op goes first
        seen.append(len(masks))
        return -(masks * w).sum((1, 2))

    mask, rounds = prune(score, START)
    assert seen == [24, 18, 12] and mask.sum(-1).tolist() == [1] * 6
    want = np.where(START, w, np.inf).argmin(-1)
    np.testing.assert_array_equal(mask.argmax(-1), want)
    for r in rounds:  # one removal per edge, the candidate of the best score on its edge
        assert sorted(e for e, _ in r["removed"]) == list(range(6))
        for e, o in r["removed"]:
            rows = [i for i, c in enumerate(r["candidates"]) if c[0] == e]
            assert r["scores"][r["candidates"].index([e, o])] == max(r["scores"][i] for i in rows)


def test_prune_breaks_ties_by_edge_op_order_and_refuses_an_empty_edge():
    mask, rounds = prune(lambda m: np.zeros(len(m)), START)
    assert rounds[0]["removed"] == [[e, 1] for e in range(6)]
    np.testing.assert_array_equal(mask.argmax(-1), [4] * 6)  # the last op standing
    bad = START.copy()
    bad[2] = False
    with pytest.raises(ValueError, match="at least one op"):
        prune(lambda m: np.zeros(len(m)), bad)


def test_pruning_by_parameter_count_ends_at_the_all_conv3x3_cell():
    mask, _ = prune(lambda m: np.asarray(cost.params(Gates(m)), np.float64), START)
    assert nb201.to_string(mask.argmax(-1)) == ("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+"
                                                "|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|")


@pytest.fixture(scope="module")
def scorer():
    # shared weights: a one-op cell and its architecture then see the same weights (per_arch draws
    # the one differently from the other; the method's default runs through test_method_contract)
    return ProxyScorer("naswot,params,flops,layers,az_expressivity", C=C, N=N, seed=1, init="shared")


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(0)
    return rng.normal(size=(B, H, H, 3)).astype(np.float32), rng.integers(0, 10, B).astype(np.int32)


MASKS = np.stack([START, np.eye(5, dtype=bool)[[3, 1, 2, 4, 0, 3]],
                  np.array([[0, 1, 0, 1, 0], [1, 0, 0, 0, 0], [0, 0, 1, 1, 1], [0, 0, 0, 0, 1],
                            [1, 1, 1, 1, 1],
                            [0, 0, 1, 0, 0]], bool)])


def test_a_one_op_mixed_cell_scores_as_its_architecture(scorer, batch):
    archs = np.array([[3, 1, 2, 4, 0, 3], [0, 2, 3, 1, 4, 1]], np.int32)
    single, mixed = scorer(archs, *batch), scorer.score_mixed(np.eye(5, dtype=bool)[archs], *batch)
    for k in ("naswot", "params", "flops", "layers", "az_expressivity", "log_nau"):
        np.testing.assert_allclose(mixed[k], single[k], rtol=1e-5, err_msg=k)


def test_a_mixed_cell_costs_and_counts_every_op_it_keeps(scorer, batch):
    out = scorer.score_mixed(MASKS, *batch)
    params, _ = scorer.mixed_weights()
    for i, m in enumerate(MASKS):
        # parameters: the supernet leaves the mask uses, counted one by one
        used = jax.tree.leaves(scorer.space.used_params(params, Gates(m)))
        sizes = [x.size for x in jax.tree.leaves(params)]
        assert out["params"][i] == sum(s for s, u in zip(sizes, used) if u)
        convs = m[:, nb.CONV1].sum() + m[:, nb.CONV3].sum()
        assert out["layers"][i] == 8 + 3 * N * convs
        # FLOPs: the standalone network's fixed part plus every kept conv on every cell
        flops = float(cost.flops(np.zeros(6, np.int32), C, N, image_size=H))
        for stage, c in enumerate((C, 2 * C, 4 * C)):
            hw = (H >> stage) ** 2
            flops += N * hw * c * c * (m[:, nb.CONV1].sum() + 9 * m[:, nb.CONV3].sum())
        assert out["flops"][i] == flops
        # NASWOT's units: every kept conv has its ReLU on its source node (C channels per stage),
        # the two ResNet blocks two each, the head one
        units = 0
        for stage, c in enumerate((C, 2 * C, 4 * C)):
            hw = (H >> stage) ** 2
            reads = sum(int(m[e, nb.CONV1]) + int(m[e, nb.CONV3]) for e in range(6))
            units += N * reads * c * hw
            if stage:
                # conv_a reads the input, conv_b the half-size map
                units += c // 2 * (H >> (stage - 1)) ** 2 + c * hw
        units += 4 * C * (H >> 2) ** 2
        np.testing.assert_allclose(np.exp(out["log_nau"][i]), units, rtol=1e-6)


def test_score_mixed_refuses_bad_masks(scorer, batch):
    with pytest.raises(ValueError, match=r"shape \[K, 6, 5\]"):
        scorer.score_mixed(np.ones((6, 5), bool), *batch)
    empty = START[None].copy()
    empty[0, 3] = False
    empty[0] = False
    with pytest.raises(ValueError, match="at least one option"):
        scorer.score_mixed(empty, *batch)
