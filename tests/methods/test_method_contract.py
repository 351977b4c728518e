"""The contract every registered method must keep (jaxnas.methods.base.Method), through the one loop.

Each test runs over every method in `jaxnas.registry.METHODS`, so a new method is checked the
moment it is registered: `init` gives a SearchState the loop can checkpoint, `train_step` is
pure (the loop jits it unless `host_step`), `epoch_end` / `round_end` return (state, metrics),
`select` returns an architecture of the space, and a run killed after its first epoch resumes to
the same final state and result.json, bit for bit.

Cost control: the configuration of tests/engine/test_loop.py (C=4, N=1, batch 16 on 8 devices), so
supernet programs are shared with it; 2 rounds of 1 epoch of 3 steps.
"""
from __future__ import annotations

import json
import shutil

import jax
import numpy as np
import pytest
from helpers import NSE_MOBILE

from jaxnas import methods
from jaxnas.config import Config
from jaxnas.methods.base import Method
from jaxnas.train.loop import SearchRun
from jaxnas.train.state import SearchState

SMALL = {"nb201.C": 4, "nb201.N": 1, "train.batch_size": 16, "train.epochs": 1, "train.rounds": 2,
         "eval.select_num": 4, "eval.batch_size": 16, "proxy.batch_size": 16, "pgnas.candidates": 8}
TRAIN_ARCH = "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|avg_pool_3x3~0|none~1|nor_conv_3x3~2|"


@pytest.fixture(scope="module", autouse=True)
def data_cache(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("JAXNAS_CACHE", str(tmp_path_factory.mktemp("data-cache")))
    yield
    mp.undo()


# method@space: a method on another space than NB201, at the same cost
OTHER_SPACES = {"pgnas@hybrid": {"space": "hybrid", "hybrid.C": 4, "hybrid.blocks": 1},
                # the smallest memory-bank network: 2 units of 8 (N_max 16), 3x3 kernels, 4 layer slots
                "smash@smash": {"space": "smash", "smash.depth": 4, "smash.width": 1, "smash.N_max": 16,
                                "smash.max_kernel": 3, "smash.max_layers": 4}}
SMALL_SMASH = {"smash_search.random": 4, "smash_search.perturbed": 2, "smash_search.markov": 2}
# NSE: a subset of 3 of NB201's 5 operations an edge (2 of 27 on the mobile space), 4 samples a round
SMALL_NSE = {"nse.k": 3, "nse.sample_num": 4}
OTHER_SPACES["nse@mobile"] = NSE_MOBILE  # the smallest mobile skeleton (tests/helpers.py)


def config(case, image_folder) -> Config:
    name = case.split("@")[0]
    cfg = Config(data=str(image_folder), method=name).set({**SMALL, **OTHER_SPACES.get(case, {})})
    if name == "smash":
        cfg = cfg.set(SMALL_SMASH)
    if name == "nse":
        cfg = cfg.set({**SMALL_NSE, **OTHER_SPACES.get(case, {})})
    if case == "smash":  # the same fixed architectures ranked with generated weights (eval.rank_probe)
        cfg = cfg.set({"eval.rank_probe": 6})
    if name == "rule":  # ranks by proxy.rule: here a named rule
        cfg = cfg.set({"proxy.rule": "naswot_params"})
    if name == "train":
        cfg = cfg.set({"arch": TRAIN_ARCH, "nb201.affine": True, "nb201.track_running_stats": True})
    return cfg


def strip_wall(result: dict) -> dict:
    return {k: v for k, v in result.items() if k != "wall_time_s"}


class Recording:
    """Wraps a method class: records what the loop's hooks return, without changing them."""

    def __init__(self, cls):
        self.cls, self.calls = cls, []

    def __getattr__(self, name):
        return getattr(self.cls, name)

    def __call__(self, *args, **kw):
        method = self.cls(*args, **kw)
        for hook in ("epoch_end", "round_end"):
            original = getattr(method, hook)

            def recorded(state, evaluator, original=original, hook=hook, **kw):
                out = original(state, evaluator, **kw)
                self.calls.append((hook, out) if hook == "epoch_end" else (hook, out, kw.get("last")))
                return out
            setattr(method, hook, recorded)
        return method


@pytest.mark.parametrize("case", sorted(methods.all_methods()) + sorted(OTHER_SPACES))
def test_method_contract_and_bit_exact_resume(case, image_folder, tmp_path):
    cfg, name = config(case, image_folder), case.split("@")[0]
    cls = Recording(methods.get(name))
    run = SearchRun(cfg, tmp_path / "run", method_cls=cls, progress=False)
    assert isinstance(run.method, Method) and run.method.name == name
    state = run.method.init()
    assert isinstance(state, SearchState) and int(state.step) == 0 and int(state.round) == 0
    result = run.run()

    saved = json.loads((tmp_path / "run" / "result.json").read_text())
    assert saved == json.loads(json.dumps(result)) and saved["method"] == name
    arch = run.space.from_string(saved["arch"])
    assert run.space.to_string(run.space.validate(arch)) == saved["arch"]
    if case == "smash":
        assert len(saved["rank_probe"]["valid_acc"]) == 6 and "kendall_tau" not in saved["rank_probe"]
    if not run.method.trains:  # training-free: no step, no hook, straight to select
        assert saved["steps"] == 0 and cls.calls == [] and "score" in saved
        return
    # 2 rounds of 1 epoch: the loop called epoch_end twice and round_end twice, each returning
    # (SearchState, metrics dict)
    assert [call[0] for call in cls.calls] == ["epoch_end", "round_end"] * 2
    assert all(isinstance(call[1][0], SearchState) and isinstance(call[1][1], dict) for call in cls.calls)
    assert [call[2] for call in cls.calls if call[0] == "round_end"] == [False, True]  # told the last round
    assert saved["steps"] == int(run.state.step) == 2 * run.steps_per_epoch
    assert int(run.state.round) == 2 and int(run.state.epoch) == 2
    final = jax.device_get(run.state)

    # killed after round 1: its newest checkpoint and the result are gone; the same run resumes
    steps = sorted(int(p.name) for p in (tmp_path / "run" / "checkpoints").iterdir() if p.name.isdigit())
    assert steps == [run.steps_per_epoch, 2 * run.steps_per_epoch]
    shutil.rmtree(tmp_path / "run" / "checkpoints" / str(steps[-1]))
    (tmp_path / "run" / "result.json").unlink()
    again = SearchRun(cfg, tmp_path / "run", method_cls=methods.get(name), progress=False)
    resumed = again.run()
    assert again.resumed_from == steps[0]
    assert strip_wall(resumed) == strip_wall(result)
    leaves = jax.tree.leaves(jax.tree.map(np.asarray,
                                          jax.device_get(again.state.replace(elapsed=final.elapsed))))
    want = jax.tree.leaves(jax.tree.map(np.asarray, final))
    assert len(leaves) == len(want) and all(np.array_equal(a, b) for a, b in zip(leaves, want))
