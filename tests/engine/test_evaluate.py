"""jaxnas.evaluate: the chunked, vmapped candidate evaluation equals a plain loop over candidates.

XLA:CPU compiles dominate: one tiny supernet (C=4, N=1, 8x8 images), one evaluate() compile per
(kind, bn), and an eager reference loop (it compiles only individual primitives, shared by all tests).
"""
import functools
import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from helpers import ZERO_FED, build  # abstract build, weights and random BN statistics from numpy

from jaxnas import evaluate as evaluate_mod
from jaxnas.evaluate import Evaluator, block_plan, evaluate, evaluate_blocks, recalibrate
from jaxnas.nn import apply, split
from jaxnas.nn.ops import BN_MOMENTUM, conv2d
from jaxnas.spaces import nb201
from jaxnas.spaces.arch import Choice, Weights
from jaxnas.spaces.nb201 import networks
from jaxnas.spaces.nb201.networks import NB201SuperNet

FUSION_EMITTERS = "--xla_cpu_use_fusion_emitters=false" not in os.environ.get("XLA_FLAGS", "")

C, H, B, K, CHUNK, R, RB = 4, 8, 8, 7, 3, 2, 4  # K candidates in chunks of 3 (3 + 3 + 1)
TOL = {"rtol": 1e-5, "atol": 1e-5}


@pytest.fixture(scope="module")
def setup():
    graphdef, params, stats = split(build(lambda: NB201SuperNet(C, 1, 10, rngs=nnx.Rngs(0)), seed=1))
    rng = np.random.default_rng(2)
    data = {
        "images": jnp.asarray(rng.normal(size=(B, H, H, 3)), jnp.float32),
        "labels": jnp.asarray(rng.integers(0, 10, B), jnp.int32),
        "recal": jnp.asarray(rng.normal(0.3, 1.2, size=(R, RB, H, H, 3)), jnp.float32),  # other statistics
        # ZERO_FED: an all-zero node feeding convs (skipped under bn="batch": the cells have no BN bias)
        "single": Choice(jnp.asarray(np.concatenate([nb201.from_index([0, 1835]), ZERO_FED[None],
                                                     rng.integers(0, 5, (K - 3, 6))]), jnp.int32)),
        "weighted": Weights(jax.nn.softmax(jnp.asarray(2 * rng.normal(size=(K, 6, 5)), jnp.float32))),
    }
    return graphdef, params, stats, data


def reference(graphdef, params, stats, archs, images, labels, bn, recal_images=None):
    """Candidate by candidate, eagerly (compiling this forward would cost more than running it
    op by op). Recalibration recovers each batch's statistics from a momentum update
    of the supernet's own (nonzero) running statistics, in float64 numpy, and averages them."""
    np_stats = jax.tree.map(lambda a: np.asarray(a, np.float64), stats)
    losses, accs = [], []
    for i in range(archs.batch_size):
        arch = jax.tree.map(lambda v, i=i: v[i], archs)
        s = stats
        if bn == "recal":
            per_batch = []
            for imgs in recal_images:
                _, new = apply(graphdef, params, stats, imgs, arch, train=True)
                per_batch.append(jax.tree.map(lambda n, o: (np.asarray(n, np.float64) - (1 - BN_MOMENTUM) * o)
                                              / BN_MOMENTUM, new, np_stats))
            s = jax.tree.map(lambda *b: np.float32(sum(b) / len(b)), *per_batch)
        logits, _ = apply(graphdef, params, s, images, arch, train=(bn == "batch"))
        logits = np.asarray(logits, np.float64)
        logp = logits - logits.max(-1, keepdims=True)
        logp = logp - np.log(np.exp(logp).sum(-1, keepdims=True))
        y = np.asarray(labels)
        losses.append(-logp[np.arange(len(y)), y].mean())
        accs.append((logits.argmax(-1) == y).mean())
    return np.array(losses), np.array(accs)


@pytest.mark.parametrize("kind", ["single", "weighted"])
@pytest.mark.parametrize("bn", ["running", "batch", "recal"])
def test_evaluate_equals_loop(setup, kind, bn):
    graphdef, params, stats, d = setup
    archs = d[kind]
    recal = d["recal"] if bn == "recal" else None
    out = evaluate(graphdef, params, stats, archs, d["images"], d["labels"], bn=bn, chunk_size=CHUNK,
                   recal_images=recal)
    assert set(out) == {"loss", "acc"}
    assert out["loss"].shape == (K,) and out["acc"].shape == (K,)
    loss, acc = reference(graphdef, params, stats, archs, d["images"], d["labels"], bn, recal)
    np.testing.assert_allclose(np.asarray(out["loss"]), loss, **TOL)
    np.testing.assert_allclose(np.asarray(out["acc"]), acc, atol=1e-6)
    assert len(np.unique(np.round(loss, 5))) >= K - 1  # the candidates really differ
    assert np.all((acc >= 0) & (acc <= 1))


def test_bn_modes_differ(setup):
    """The three BN modes are not secretly the same computation (single mode, the compiled programs
    of test_evaluate_equals_loop are reused)."""
    graphdef, params, stats, d = setup
    res = {bn: np.asarray(evaluate(graphdef, params, stats, d["single"], d["images"], d["labels"], bn=bn,
                                   chunk_size=CHUNK,
                                   recal_images=d["recal"] if bn == "recal" else None)["loss"])
           for bn in ("running", "batch", "recal")}
    for a, b in (("running", "batch"), ("running", "recal"), ("batch", "recal")):
        assert np.abs(res[a] - res[b]).max() > 1e-3, (a, b)


def test_forward_only_picks_the_pruning(setup, monkeypatch):
    """A forward-only pass lets the supernet pick its pruning: zero-input convs too exactly when BN
    uses batch statistics (train) and the search cells have no BN bias (affine=False); unused ops
    otherwise; nothing for Weights or for passes that may be differentiated."""
    seen = []
    real = networks.live_ops
    monkeypatch.setattr(networks, "live_ops", lambda a, tapped, zero_inputs=False: (
        seen.append(zero_inputs), real(a, tapped, zero_inputs))[1])
    graphdef, params, stats, d = setup
    _, aff_params, aff_stats = split(build(lambda: NB201SuperNet(C, 1, 10, affine=True, rngs=nnx.Rngs(0)),
                                           seed=1))
    aff_graphdef = split(NB201SuperNet(C, 1, 10, affine=True, rngs=nnx.Rngs(0)))[0]
    x, arch = d["images"], Choice(jnp.asarray(ZERO_FED))
    picks = {}
    for name, (g, p, s) in {"plain": (graphdef, params, stats),
                            "affine": (aff_graphdef, aff_params, aff_stats)}.items():
        for train in (True, False):
            seen.clear()
            apply(g, p, s, x, arch, train=train, forward_only=True)
            picks[name, train] = set(seen)
    assert picks == {("plain", True): {True}, ("plain", False): {False},
                     ("affine", True): {False}, ("affine", False): {False}}
    seen.clear()
    apply(graphdef, params, stats, x, arch, train=True)  # may be differentiated: no pruning
    apply(graphdef, params, stats, x, Weights(nb201.to_mask(ZERO_FED)), train=True, forward_only=True)
    assert seen == []


def test_evaluator_adds_the_space_cost(setup):
    """With a cost function the Evaluator returns each candidate's cost beside its accuracy (NSE
    ranks on both); the values are the space's cost of each architecture."""
    graphdef, params, stats, d = setup
    cost = functools.partial(nb201.SPACE.cost, C=C, N=1, num_classes=10, image_size=H)
    out = Evaluator(d["images"], d["labels"], bn="batch", chunk_size=CHUNK, cost=cost)(graphdef, params,
                                                                                       stats,
                                                                                     d["single"])
    assert set(out) == {"loss", "acc", "params", "flops"}
    for i, arch in enumerate(np.asarray(d["single"].value)):
        want = cost(jnp.asarray(arch))
        assert float(out["params"][i]) == pytest.approx(float(want["params"]), rel=1e-6)
        assert float(out["flops"][i]) == pytest.approx(float(want["flops"]), rel=1e-6)
    assert len(set(np.round(np.asarray(out["params"]), 6))) > 1  # the candidates' costs differ


def test_block_plan():
    """Blocks of whole chunks (at least two), equal in size, the last padded; the remainder alone."""
    blocks, rest = block_plan(7, 2, 4)
    np.testing.assert_array_equal(blocks, [[0, 1, 2, 3], [4, 5, 5, 5]])
    np.testing.assert_array_equal(rest, [6])
    blocks, rest = block_plan(9, 1, 4)  # 3 blocks of 3, not 4 + 4 + 1 padded to 4
    assert blocks.tolist() == [[0, 1, 2], [3, 4, 5], [6, 7, 8]] and len(rest) == 0
    blocks, rest = block_plan(100, 1, 8)  # 13 blocks of 8 would pad 4: 13 blocks of 8 all the same
    assert blocks.shape == (13, 8) and set(blocks.ravel()) == set(range(100))
    assert block_plan(7, 3, 6) is None and block_plan(4, 4, 8) is None and block_plan(5, 1, 1) is not None
    assert block_plan(5, 1, 1)[0].shape[1] == 2  # never a one-step scan


def test_blocks_are_bit_identical_to_one_call(setup, monkeypatch):
    """Candidates dispatched in blocks (two whole chunks, the last padded, and the remainder of 7 % 2
    alone) give one call's results bit for bit; the bar advances per block, and a KeyboardInterrupt
    (Ctrl-C, or SIGTERM through the CLI) raised between blocks stops the dispatching there."""
    graphdef, params, stats, d = setup
    one = evaluate(graphdef, params, stats, d["single"], d["images"], d["labels"], bn="batch", chunk_size=2)
    ev = Evaluator(d["images"], d["labels"], bn="batch", chunk_size=2).in_blocks("test", 4)
    out = ev(graphdef, params, stats, d["single"])
    for key in ("loss", "acc"):
        if FUSION_EMITTERS:
            assert np.array_equal(np.asarray(out[key]), np.asarray(one[key])), key
        else:  # the suite's compile-time flag (conftest.py): the programs may sum in another order
            np.testing.assert_array_max_ulp(np.asarray(out[key]), np.asarray(one[key]), maxulp=4)
    calls = []
    real = evaluate_mod._evaluate
    monkeypatch.setattr(evaluate_mod, "_evaluate", lambda *a,
                        **k: (calls.append(a[3].batch_size), real(*a, **k))[1])

    class Bar:
        def __init__(self, stop=False):
            self.seen, self.stop = [], stop

        def update(self, n):
            self.seen.append(n)
            if self.stop:
                raise KeyboardInterrupt

    bar = Bar()
    evaluate_blocks(graphdef, params, stats, d["single"], d["images"], d["labels"], bn="batch", chunk_size=2,
                    block_size=4, bar=bar)
    assert bar.seen == [4, 2, 1] and calls == [4, 4, 1]
    calls.clear()
    with pytest.raises(KeyboardInterrupt):
        evaluate_blocks(graphdef, params, stats, d["single"], d["images"], d["labels"], bn="batch",
                        chunk_size=2,
                        block_size=4, bar=Bar(stop=True))
    assert calls == [4]


def test_blocks_are_bit_identical_under_xlas_default_cpu_flags():
    """The bit-identity `evaluate_blocks` promises holds with XLA:CPU's fusion emitters, which the
    suite turns off for compile time (conftest.py): the test above, rerun in a process with them."""
    if FUSION_EMITTERS:
        pytest.skip("this process already runs with XLA's fusion emitters: the test above checked it")
    env = {**os.environ, "JAXNAS_TEST_FUSION_EMITTERS": "1"}
    env["XLA_FLAGS"] = env["XLA_FLAGS"].replace("--xla_cpu_use_fusion_emitters=false", "")
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
                        f"{__file__}::test_blocks_are_bit_identical_to_one_call"], env=env,
                       capture_output=True, text=True, cwd=pathlib.Path(__file__).parents[2])
    assert r.returncode == 0 and "1 passed" in r.stdout, r.stdout[-3000:] + r.stderr[-3000:]


def test_recalibrate_stem_statistics(setup):
    """Recalibrated statistics, checked independently where they can be computed by hand: the stem's
    BN sees conv(images), so its statistics are the per-batch mean / unbiased variance, averaged."""
    graphdef, params, stats, d = setup
    arch = Choice(d["single"].value[2])
    s = recalibrate(graphdef, params, stats, arch, d["recal"])
    kernel = params["stem"]["conv"]["kernel"]
    feats = np.stack([np.asarray(conv2d(imgs, kernel, 1, 1), np.float64) for imgs in d["recal"]])
    mean = feats.mean((1, 2, 3)).mean(0)
    var = feats.var((1, 2, 3), ddof=1).mean(0)
    np.testing.assert_allclose(np.asarray(s["stem"]["bn"]["mean"]), mean, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.asarray(s["stem"]["bn"]["var"]), var, rtol=1e-4, atol=1e-5)
    assert np.abs(np.asarray(stats["stem"]["bn"]["mean"]) - mean).max() > 1e-2  # differs from running


def test_evaluate_errors(setup):
    graphdef, params, stats, d = setup
    args = (graphdef, params, stats, d["single"], d["images"], d["labels"])
    with pytest.raises(ValueError, match="bn must be one of"):
        evaluate(*args, bn="train")
    with pytest.raises(ValueError, match="chunk_size must be >= 1, got 0"):
        evaluate(*args, chunk_size=0)
    with pytest.raises(ValueError, match="chunk_size must be >= 1, got -2"):
        evaluate(*args, chunk_size=-2)
    with pytest.raises(ValueError, match="bn='recal' needs recal_images"):
        evaluate(*args, bn="recal")
    with pytest.raises(ValueError, match="leading candidate axis"):
        evaluate(graphdef, params, stats, Choice(d["single"].value[0, 0]), d["images"], d["labels"])
    with pytest.raises(TypeError, match="wrapped as Choice"):
        evaluate(graphdef, params, stats, d["single"].value, d["images"], d["labels"])
