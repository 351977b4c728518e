"""jaxnas.evaluate: the chunked, vmapped candidate evaluation equals a plain loop over candidates.

XLA:CPU compiles dominate: one tiny supernet (C=4, N=1, 8x8 images), one evaluate() compile per
(mode, bn), and an eager reference loop (it compiles only individual primitives, shared by all tests).
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxnas.evaluate import evaluate, recalibrate
from jaxnas.nn import apply, split
from jaxnas.spaces.nb201.networks import NB201SuperNet
from jaxnas.nn.ops import BN_MOMENTUM, conv2d
from jaxnas.spaces import nb201
from test_nn import ZERO_FED, build  # abstract build, weights and random BN statistics from numpy

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
        "single": jnp.asarray(np.concatenate([nb201.from_index([0, 1835]), ZERO_FED[None],
                                              rng.integers(0, 5, (K - 3, 6))]), jnp.int32),
        "weighted": jax.nn.softmax(jnp.asarray(2 * rng.normal(size=(K, 6, 5)), jnp.float32)),
    }
    return graphdef, params, stats, data


def reference(graphdef, params, stats, archs, images, labels, mode, bn, recal_images=None):
    """Candidate by candidate, eagerly (compiling this forward would cost more than running it
    op by op). Recalibration recovers each batch's statistics from a momentum update
    of the supernet's own (nonzero) running statistics, in float64 numpy, and averages them."""
    np_stats = jax.tree.map(lambda a: np.asarray(a, np.float64), stats)
    losses, accs = [], []
    for arch in archs:
        s = stats
        if bn == "recal":
            per_batch = []
            for imgs in recal_images:
                _, new = apply(graphdef, params, stats, imgs, arch, mode=mode, train=True)
                per_batch.append(jax.tree.map(lambda n, o: (np.asarray(n, np.float64) - (1 - BN_MOMENTUM) * o)
                                              / BN_MOMENTUM, new, np_stats))
            s = jax.tree.map(lambda *b: np.float32(sum(b) / len(b)), *per_batch)
        logits, _ = apply(graphdef, params, s, images, arch, mode=mode, train=(bn == "batch"))
        logits = np.asarray(logits, np.float64)
        logp = logits - logits.max(-1, keepdims=True)
        logp = logp - np.log(np.exp(logp).sum(-1, keepdims=True))
        y = np.asarray(labels)
        losses.append(-logp[np.arange(len(y)), y].mean())
        accs.append((logits.argmax(-1) == y).mean())
    return np.array(losses), np.array(accs)


@pytest.mark.parametrize("mode", ["single", "weighted"])
@pytest.mark.parametrize("bn", ["running", "batch", "recal"])
def test_evaluate_equals_loop(setup, mode, bn):
    graphdef, params, stats, d = setup
    archs = d[mode]
    recal = d["recal"] if bn == "recal" else None
    out = evaluate(graphdef, params, stats, archs, d["images"], d["labels"], mode=mode, bn=bn,
                   chunk_size=CHUNK, recal_images=recal)
    assert set(out) == {"loss", "acc"}
    assert out["loss"].shape == (K,) and out["acc"].shape == (K,)
    loss, acc = reference(graphdef, params, stats, archs, d["images"], d["labels"], mode, bn, recal)
    np.testing.assert_allclose(np.asarray(out["loss"]), loss, **TOL)
    np.testing.assert_allclose(np.asarray(out["acc"]), acc, atol=1e-6)
    assert len(np.unique(np.round(loss, 5))) >= K - 1  # the candidates really differ
    assert np.all((acc >= 0) & (acc <= 1))


def test_bn_modes_differ(setup):
    """The three BN modes are not secretly the same computation (single mode, the compiled programs
    of test_evaluate_equals_loop are reused)."""
    graphdef, params, stats, d = setup
    res = {bn: np.asarray(evaluate(graphdef, params, stats, d["single"], d["images"], d["labels"], bn=bn,
                                   chunk_size=CHUNK, recal_images=d["recal"] if bn == "recal" else None)["loss"])
           for bn in ("running", "batch", "recal")}
    for a, b in (("running", "batch"), ("running", "recal"), ("batch", "recal")):
        assert np.abs(res[a] - res[b]).max() > 1e-3, (a, b)


def test_forward_prune_reaches_the_supernet(setup):
    """evaluate's forward prunes zero-input convs exactly when BN uses batch statistics and the
    search cells have no BN bias, and passes that choice on unchanged (single mode only)."""
    from jaxnas.evaluate import _forward_prune, _impl_kw
    _, params, _, _ = setup  # affine=False search cells
    assert [_forward_prune(params, bn) for bn in ("batch", "running", "recal")] == ["zero", True, True]
    _, affine_params, _ = split(build(lambda: NB201SuperNet(C, 1, 10, affine=True, rngs=nnx.Rngs(0)), seed=1))
    assert _forward_prune(affine_params, "batch") is True
    assert _impl_kw("single", "switch", "zero")["prune"] == "zero"
    assert _impl_kw("weighted", None, "zero")["prune"] is False


def test_recalibrate_stem_statistics(setup):
    """Recalibrated statistics, checked independently where they can be computed by hand: the stem's
    BN sees conv(images), so its statistics are the per-batch mean / unbiased variance, averaged."""
    graphdef, params, stats, d = setup
    arch = d["single"][2]
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
        evaluate(graphdef, params, stats, d["single"][0], d["images"], d["labels"])
