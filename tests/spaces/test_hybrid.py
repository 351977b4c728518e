"""PGNAS's hybrid multi-kernel space (jaxnas.spaces.hybrid) and PGNAS on it: the cost model against
the pruned network and a plain count, inherited weights, per-example gates, the channel-level
regulariser against a plain sum, and `jaxnas search --space hybrid` followed by `jaxnas train`.
The space contract (sampling, strings, hashing) is tests/spaces/test_space_contract.py's, and the bit-exact
resume of PGNAS on this space tests/methods/test_method_contract.py's.

Cost control: C=4, one block per stage, 8x8 images (16x16 for the cost model's strides)."""
from __future__ import annotations

import json
import math
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnas.cli import main
from jaxnas.config import Config
from jaxnas.methods.pgnas import PGNAS
from jaxnas.nn import apply, count_params, split
from jaxnas.spaces.arch import Choice, InputGates
from jaxnas.spaces.hybrid import KERNELS, HybridSpace, inherit

SPACE = HybridSpace(4, 1)
B, H = 6, 8


def masks(seed, k=3):
    """Random masks, one with a whole branch of one layer dropped and one keeping everything."""
    a = np.array(SPACE.sample(jax.random.key(seed), k))
    a[0, 1, 2] = False                # layer 1, branch 3x3d2: nothing kept
    a[1] = SPACE.valid
    return a


def images(seed=0, size=H):
    return jnp.asarray(np.random.default_rng(seed).normal(size=(B, size, size, 3)), jnp.float32)


@pytest.fixture(scope="module")
def supernet():
    return SPACE.supernet(10, seed=1)


def test_cost_counts_the_pruned_network():
    """params: the pruned network's own parameter count; flops: a plain loop over its convs (k*k*kept
    inputs*outputs per output pixel) and the classifier."""
    for a in masks(0):
        net = SPACE.network(a, 10)
        got = jax.device_get(SPACE.cost(jnp.asarray(a), image_size=16))
        assert int(got["params"]) == count_params(split(net)[1])
        flops, size = 27 * 4 * 16 * 16, 16
        for layer, (cin, cout, stride) in enumerate(SPACE.layers):
            size //= stride
            for s, (_, k, _) in enumerate(KERNELS):
                flops += k * k * int(a[layer, s, :cin].sum()) * (cout // 4) * size * size
            if layer % 2 == 0 and (cin != cout or stride != 1):
                flops += cin * cout * size * size
        flops += 16 * 10 + 10
        assert int(got["flops"]) == flops
    batch = jax.vmap(lambda x: SPACE.cost(x, image_size=16))(jnp.asarray(masks(0)))
    assert batch["params"].shape == (3,)


def test_masked_supernet_is_the_pruned_network_with_inherited_weights(supernet):
    x = images(1)
    for a in masks(2):
        want = apply(*split(supernet), x, Choice(jnp.asarray(a)), train=True)[0]
        got = inherit(supernet, a)(x, train=True)
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=2e-5, atol=2e-5)


def test_per_example_gates_act_on_each_example_alone(supernet):
    graphdef, params, stats = split(supernet)
    x = images(3)
    gates = jnp.asarray(np.random.default_rng(4).uniform(size=(B, *SPACE.valid.shape)) * SPACE.valid,
                        jnp.float32)
    y = apply(graphdef, params, stats, x, InputGates(gates), train=False)[0]
    for i in range(B):
        want = apply(graphdef, params, stats, x, InputGates(gates[i]), train=False)[0]
        np.testing.assert_allclose(np.asarray(y[i]), np.asarray(want[i]), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="hybrid architecture of shape"):
        apply(graphdef, params, stats, x, Choice(jnp.ones((3, 4, 16), bool)), train=False)


def test_strings_name_their_sizes():
    a = masks(5)[0]
    text = SPACE.to_string(a)
    assert text.startswith("hybrid-C4-b1:") and np.array_equal(SPACE.from_string(text), a)
    with pytest.raises(ValueError, match="starts with 'hybrid-C8-b1:'"):
        HybridSpace(8, 1).from_string(text)
    with pytest.raises(ValueError, match="padding channel"):
        SPACE.validate(np.ones(SPACE.valid.shape, bool))
    sp = SPACE.sparsity(SPACE.valid)
    assert sp["all"] == 0.0 and set(sp) == {name for name, _, _ in KERNELS} | {"all"}


def small_method(**over):
    cfg = Config(method="pgnas", space="hybrid").set({"hybrid.C": 4, "hybrid.blocks": 1, **over})
    dataset = types.SimpleNamespace(train_labels=np.zeros(1000, np.int32))
    return PGNAS(cfg, SPACE, 10, dataset=dataset)


def test_channel_regulariser_equals_a_plain_sum():
    """(l^2/N) sum_{l,s} (1-p) |w_ls|^2 + (1/N) sum_{l,s} k_l [p log p + (1-p) log(1-p)], k_l the layer's
    input channels, w_ls its branch's kernel: a float64 loop."""
    m = small_method(**{"pgnas.length_scale_sq": 3.0})
    state = m.init()
    p_logit = jax.random.normal(jax.random.key(2), (len(SPACE.layers), len(KERNELS)))
    got = float(m.regulariser(state.params, p_logit))
    params = jax.device_get(state.params)
    want = 0.0
    for layer, (cin, _, _) in enumerate(SPACE.layers):
        conv = params["blocks"][layer // 2]["conv_a" if layer % 2 == 0 else "conv_b"]
        for s in range(len(KERNELS)):
            p = 1 / (1 + math.exp(-float(p_logit[layer, s])))
            w = np.asarray(conv["kernels"][s], np.float64)
            assert w.shape[2] == cin
            want += 3.0 / m.n_train * (1 - p) * float((w * w).sum())
            want += cin / m.n_train * (p * math.log(p) + (1 - p) * math.log(1 - p))
    assert got == pytest.approx(want, rel=1e-5)


def test_one_step_moves_every_channel_group():
    m = small_method(**{"train.batch_size": 8})
    state = m.init()
    x = jnp.asarray(np.random.default_rng(3).normal(size=(8, 8, 8, 3)), jnp.float32)
    new, metrics = jax.jit(m.train_step)(state, (x, jnp.arange(8) % 10), None, 0.05)
    assert float(metrics["loss"]) == pytest.approx(float(metrics["ce"]) + float(metrics["regulariser"]),
                                                   rel=1e-6)
    assert np.abs(np.asarray(new.method["p_logit"] - state.method["p_logit"])).min() > 0


def test_search_then_train_the_pruned_network(image_folder, tmp_path, capsys):
    """`jaxnas search --method pgnas --space hybrid` writes the best pair's mask with its cost; `jaxnas
    train --arch-from` retrains that pruned network from scratch at the run's sizes."""
    common = ["--data", str(image_folder), "--no-progress", "--preset", "tiny"]
    sizes = ["hybrid.C=4", "hybrid.blocks=1", "train.epochs=1", "train.batch_size=16", "eval.batch_size=16",
             "pgnas.candidates=6"]
    assert main(["search", "--method", "pgnas", "--space", "hybrid", "--out", str(tmp_path / "s"), *common,
                 *sizes]) == 0
    result = json.loads((tmp_path / "s" / "result.json").read_text())
    arch = SPACE.from_string(result["arch"])
    cost = jax.device_get(SPACE.cost(jnp.asarray(arch)))
    assert result["params"] == int(cost["params"]) <= result["full_params"]
    assert result["flops"] == int(cost["flops"]) and len(result["candidates_acc"]["values"]) == 6
    assert result["sparsity"] == SPACE.sparsity(arch)
    assert main(["train", "--arch-from", str(tmp_path / "s"), "--out", str(tmp_path / "t"), *common,
                 "train.epochs=1", "train.batch_size=16"]) == 0
    trained = json.loads((tmp_path / "t" / "result.json").read_text())
    assert trained["arch"] == result["arch"] and trained["params"] == result["params"]
    assert main(["search", "--method", "pgnas", "--space", "hybrid", "--out", str(tmp_path / "b"), *common,
                 "--bench-table", str(tmp_path / "none.csv")]) != 0
    assert "(`bench_index`); space 'hybrid' has none" in capsys.readouterr().err
