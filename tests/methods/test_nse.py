"""NSE (`jaxnas.methods.nse`) beyond the method contract: a step (weights, then alpha with its BN
statistics over the global batch) is the same on 1 and 8 devices, the NB201 variant's
straight-through weights, and the one-line refusals of bad options."""
from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import NSE_MOBILE

from jaxnas import spaces
from jaxnas.config import Config, preset
from jaxnas.methods import NSE
from jaxnas.train import sharding

MOBILE = {**NSE_MOBILE, "train.batch_size": 16}  # the method contract's smallest mobile skeleton


def test_a_step_is_the_same_on_1_and_8_devices():
    cfg = Config(method="nse").set(MOBILE)
    space = spaces.get("mobile", cfg)
    method = NSE(cfg, space, 10)
    state = method.init()
    rng = np.random.default_rng(0)
    labels = (np.arange(16) % 10).astype(np.int32)
    batches = [(rng.standard_normal((16, 32, 32, 3)).astype(np.float32), labels) for _ in range(2)]
    outs = {}
    for n in (1, 8):
        mesh = sharding.make_mesh(n)
        s = jax.device_put(jax.device_get(state), sharding.replicated(mesh))  # fresh buffers: donated
        w, a = ([jax.device_put(v, sharding.data_sharded(mesh)) for v in b] for b in batches)
        new, metrics = method.train_step(s, w, a, 0.05)  # epoch step 0: a weight step, then an alpha step
        outs[n] = jax.device_get((new, metrics))
    (one, m1), (eight, m8) = outs[1], outs[8]
    # float32 rounding, amplified in this 4-channel network: the weight gradients' norms differ by 3e-4
    # relatively between the two programs, and alpha's gradient (taken after that weight step) by up
    # to 2x on some entries; with float64 weights and data both runs agreed exactly (checked by hand,
    # 2026-12-08). alpha itself is not compared. BN statistics per device (batch 2 each) would be far off.
    for a, b in zip(jax.tree.leaves((one.params, one.stats, one.method["log"])),
                    jax.tree.leaves((eight.params, eight.stats, eight.method["log"]))):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=5e-4)
    for k in ("loss", "arch_acc", "expected_macs", "grad_norm"):
        np.testing.assert_allclose(m1[k], m8[k], rtol=1e-3, atol=1e-6)
    init = jax.device_get(state)
    for out in (one, eight):
        assert not np.allclose(out.method["alpha"], init.method["alpha"])  # alpha moved
    moved = [not np.allclose(a, b) for a, b in zip(jax.tree.leaves(one.stats), jax.tree.leaves(init.stats))]
    assert any(moved) and not all(moved)  # BN statistics moved for the gated-on operators only


def test_nb201_pair_weights_are_one_and_zero_with_the_pairs_gradient():
    cfg = preset("tiny", "nse", "nb201").set({"nb201.C": 4, "nb201.N": 1})
    law = NSE(cfg, spaces.get("nb201", cfg), 10).law
    s = jnp.zeros((6, 5), bool).at[:, 1].set(True)
    u = jnp.zeros((6, 5), bool).at[:, 3].set(True)

    def weights(q_s):
        q = jnp.stack([q_s, 1 - q_s], -1)
        return law.pair_arch({"s": s, "u": u}, q).value

    q_s = jnp.linspace(0.2, 0.8, 6)
    np.testing.assert_allclose(np.asarray(weights(q_s)), np.asarray(s, np.float32), atol=1e-7)  # s alone
    grad = np.asarray(jax.jacobian(lambda q: weights(q).sum())(q_s))
    np.testing.assert_allclose(grad, 0.0, atol=1e-7)  # d(w_s + w_u)/dq_s = 1 - 1
    g_s = np.asarray(jax.grad(lambda q: weights(q)[:, 1].sum())(q_s))
    np.testing.assert_allclose(g_s, 1.0)
    # the cost table is additive: NB201 FLOPs of any genotype
    arch = np.array([3, 1, 2, 4, 0, 3], np.int32)
    want = float(spaces.get("nb201", cfg).cost(arch, C=4, N=1)["flops"]) / 1e6
    assert law.back + law.table[np.arange(6), arch].sum() == pytest.approx(want, rel=1e-9)


@pytest.mark.parametrize("space, options, says", [
    ("nb201", {"nse.k": 6}, "nse.k=6 exceeds the pool's 5 operators"),
    ("nb201", {"nse.budget": 1.0}, "nse.budget=1 M MACs is below the cheapest architecture's"),
    ("nb201", {"nse.mac_target": 300.0}, "holds no architecture of space 'nb201'"),
    ("mobile", {"nse.budget": 0.5}, "below the cheapest architecture's"),
    ("mobile", {"train.decay_unsampled": False}, "set train.decay_unsampled=true"),
    ("hybrid", {}, "space 'hybrid' has none: --space mobile or nb201")])
def test_bad_options_get_a_one_line_error(space, options, says):
    cfg = preset("tiny", "nse", space).set(options)
    with pytest.raises(ValueError) as err:
        NSE.check(cfg, spaces.get(space, cfg))
    assert says in str(err.value) and "\n" not in str(err.value)


def test_search_then_train_a_found_mobile_architecture(image_folder, tmp_path, capsys):
    """`jaxnas search --method nse --space mobile` writes the front with each member's MACs, params
    and accuracy, `jaxnas plot` draws it, `jaxnas train --arch-from` retrains the pick on the run's
    skeleton, and `--bench-table` is refused (the space has no benchmark)."""
    from jaxnas.cli import main
    common = ["--data", str(image_folder), "--no-progress", "--preset", "tiny"]
    sizes = [f"{k}={','.join(map(str, v)) if isinstance(v, tuple) else v}" for k, v in MOBILE.items()
             if k != "space"]
    assert main(["search", "--method", "nse", "--space", "mobile", "--out", str(tmp_path / "s"), *common,
                 *sizes, "train.rounds=1", "train.epochs=1", "nse.sample_num=3", "nse.mac_target=0",
                 "eval.batch_size=16"]) == 0
    result = json.loads((tmp_path / "s" / "result.json").read_text())
    space = spaces.get("mobile", Config(method="nse").set(MOBILE))
    assert result["front"] and result["arch"] in [row["arch"] for row in result["front"]]
    for row in result["front"]:
        cost = jax.device_get(space.cost(space.from_string(row["arch"]), num_classes=10))
        assert row["params"] == int(cost["params"]) and row["flops"] == int(cost["flops"])
        assert row["macs_m"] == pytest.approx(int(cost["flops"]) / 1e6, rel=1e-5)
    from jaxnas.plot import plot_run
    assert tmp_path / "s" / "plots" / "fronts.png" in plot_run(tmp_path / "s")  # the round's front
    assert main(["train", "--arch-from", str(tmp_path / "s"), "--out", str(tmp_path / "t"), *common,
                 "train.epochs=1", "train.batch_size=16"]) == 0
    trained = json.loads((tmp_path / "t" / "result.json").read_text())
    assert trained["arch"] == result["arch"]
    assert main(["search", "--method", "nse", "--space", "mobile", "--out", str(tmp_path / "b"), *common,
                 "--bench-table", str(tmp_path / "none.csv")]) != 0
    assert "(`bench_index`); space 'mobile' has none" in capsys.readouterr().err


def test_the_host_weight_step_equals_the_traced_one():
    """`mobile.impl=eager` (the CPU default): the same draw, only its operators run on the host tape;
    the same update as the round's traced program (BN statistics of the operators that did not run
    untouched)."""
    cfg = Config(method="nse").set({**MOBILE, "mobile.impl": "eager"})
    space = spaces.get("mobile", cfg)
    host, traced = NSE(cfg, space, 10), NSE(cfg.set({"mobile.impl": "traced"}), space, 10)
    assert host.host is not None and traced.host is None
    state = jax.device_get(host.init().replace(step=np.int32(3)))
    rng = np.random.default_rng(1)
    batch = (jnp.asarray(rng.standard_normal((16, 32, 32, 3)), jnp.float32), jnp.asarray(np.arange(16) % 10))
    (a, ma), (b, mb) = (jax.device_get(m.weight_step(jax.device_put(state), batch, 0.05))
                        for m in (host, traced))
    for x, y in zip(jax.tree.leaves((a.params, a.stats, a.opt_state)),
                    jax.tree.leaves((b.params, b.stats, b.opt_state))):
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5)
    for k in ("loss", "acc", "grad_norm"):
        np.testing.assert_allclose(ma[k], mb[k], rtol=1e-5)
    gates = np.asarray(jax.device_get(host._weight_arch(jax.device_put(state))).value)
    assert 0 < gates.sum() < np.asarray(state.space["active"]).sum()  # some subset operators were off


def test_the_run_estimate_follows_the_measured_costs():
    """`NSE.estimate_seconds` (what `jaxnas search` warns with): the tiny mobile preset's steps,
    compiles and scoring from BENCHMARKS.md 16c, scaled by the skeleton's multiply-adds."""
    from jaxnas.methods import nse
    tiny = preset("tiny", "nse", "mobile")
    steps = 2 * 2 * (1500 // 64)  # 2 rounds x 2 epochs over the weights' half of 3,000 images
    per_step = nse.MOBILE_S["weight"] + nse.MOBILE_S["arch"] / 2
    scoring = 24 * nse.MOBILE_S["candidate"] * (256 + 2 * 64) / 384
    want = steps * per_step + 2 * (nse.MOBILE_S["round_compile"] + scoring)
    assert NSE.estimate_seconds(tiny, 3000) == pytest.approx(want)
    wider = tiny.set({"mobile.scale": 0.5})
    assert NSE.estimate_seconds(wider, 3000) > NSE.estimate_seconds(tiny, 3000)
    assert NSE.estimate_seconds(preset("paper", "nse", "mobile"), 1_281_167) > 100 * 86400
