"""The SMASH method's own rules (ajbrock/SMASH train.py, evaluate.py, SMASH.py update_lr): weight
decay on the main network only, the annealed sampler bounds, and the selection protocol (random,
then perturbations of the best random one, then a chain that accepts strict improvements), checked
with a stand-in score so no network is compiled."""
import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxnas.config import Config
from jaxnas.methods.smash import SMASH
from jaxnas.spaces import get as get_space

TINY = {"space": "smash", "method": "smash", "smash.depth": 4, "smash.width": 1, "smash.N_max": 32,
        "smash.max_layers": 8, "train.weight_decay": 0.1, "smash_search.random": 12,
        "smash_search.perturbed": 5, "smash_search.markov": 6}


@pytest.fixture(scope="module")
def method():
    cfg = Config().set(TINY)
    return SMASH(cfg, get_space("smash").configure(cfg), 10)


def test_weight_decay_reaches_the_main_network_only(method):
    """Zero gradients: Adam's L2 decay moves every main-network weight and no HyperNet weight."""
    params = method._params
    zeros = jax.tree.map(jnp.zeros_like, params)
    updates, _ = jax.jit(method.tx.update)(zeros, method.tx.init(params), params)
    for name, moved in (("main", True), ("hypernet", False)):
        for u, p in zip(jax.tree.leaves(updates[name]), jax.tree.leaves(params[name])):
            assert bool(jnp.any(u != 0)) == (moved and bool(jnp.any(p != 0))), name


def test_bounds_anneal_over_the_first_half(method, monkeypatch):
    monkeypatch.setattr(method, "total_steps", 800)
    at = {s: jax.device_get(method.bounds(s)) for s in (0, 99, 100, 299, 300, 400, 799)}
    # SMASH.py: 3 + int(2 f 2), f = min(step / half, 1); the sampler draws sides from range(3, bound + 2, 2):
    # {3} before 1/8 of training, {3, 5} before 3/8, {3, 5, 7} after
    assert [int(at[s]["max_kernel"]) for s in sorted(at)] == [3, 3, 4, 5, 6, 7, 7]
    assert float(at[0]["max_budget"]) == 0.5 and float(at[400]["max_budget"]) == 1.0
    assert float(at[99]["max_budget"]) == pytest.approx(0.5 + 0.5 * 99 / 400)
    monkeypatch.setattr(method, "section", dataclasses.replace(method.section, anneal=False))
    assert int(method.bounds(0)["max_kernel"]) == 7


def test_selection_follows_the_reference_protocol(method, monkeypatch):
    """A stand-in score (a fixed function of the architecture): the perturbed phase perturbs the best
    random architecture, the chain starts from the best of both phases, and each chain step
    perturbs the last accepted architecture, accepted only when strictly better."""
    space = method.space

    def fake_acc(archs):
        return (archs["G"].sum((1, 2)) * 7 + archs["kernel"].sum((1, 2, 3, 4))) % 101 * 1.0

    scored = []  # every score call in order: (archs, accuracies)

    def fake_score(state, archs, key, evaluator):
        archs = jax.tree.map(np.asarray, archs)
        acc = np.asarray(fake_acc(archs), np.float64)
        scored.append((archs, acc))
        return acc, -acc

    bases = []
    perturb = method._perturb

    def recording_perturb(key, archs, p=0.05):
        bases.append(jax.tree.map(np.asarray, archs))
        return perturb(key, archs, p)

    monkeypatch.setattr(method, "score", fake_score)
    monkeypatch.setattr(method, "_perturb", recording_perturb)

    class Evaluator:
        def in_blocks(self, *_):
            return self

    result = method.select(method.init(), Evaluator())
    cands = result["candidates"]
    assert [c["rank"] for c in cands] == list(range(1, 24))
    assert sorted(c["phase"] for c in cands) == ["markov"] * 6 + ["perturbed"] * 5 + ["random"] * 12
    accs = [c["valid_acc"] for c in cands]
    assert accs == sorted(accs, reverse=True) and result["valid_acc"] == accs[0]
    assert all(c["smash_error"] == pytest.approx(100 - c["valid_acc"]) for c in cands)
    assert all(c["params"] > 0 and c["flops"] > 0 for c in cands)
    assert space.to_string(result["arch"]) == cands[0]["arch"]

    def same(a, b):
        return all(np.array_equal(a[k], b[k]) for k in a)

    def one(archs, i):
        return jax.tree.map(lambda v: v[i:i + 1], archs)

    # phase 2: 5 perturbations of copies of the best random architecture
    (random, acc_r), (perturbed, acc_p), *chain = scored
    assert len(acc_r) == 12 and len(acc_p) == 5 and len(chain) == 6
    best = one(random, int(np.argmax(acc_r)))
    assert all(same(one(bases[0], i), best) for i in range(5))
    # phase 3: from the best of both phases; each step perturbs the last accepted architecture
    pool = jax.tree.map(lambda a, b: np.concatenate([a, b]), random, perturbed)
    accs = np.concatenate([acc_r, acc_p])
    base, current = one(pool, int(np.argmax(accs))), accs.max()
    accepted = 0
    for t, (arch, acc) in enumerate(chain):
        assert same(bases[1 + t], base)
        if acc[0] > current:
            base, current, accepted = arch, acc[0], accepted + 1
    assert len(bases) == 7


def test_train_a_found_architecture_with_the_reference_recipe(image_folder, tmp_path, capsys):
    """`jaxnas train --space smash --arch STRING`: the space's recipe (SGD Nesterov, lr 0.1, weight
    decay 1e-4, no clipping), the network of `derived.py`, the test accuracy."""
    from helpers import main_in_process

    from jaxnas.spaces.smash.config import Smash
    from jaxnas.spaces.smash.space import SmashSpace
    space = SmashSpace(Smash(depth=4, width=1, N_max=32, max_layers=3))
    text = space.to_string(jax.tree.map(lambda v: np.asarray(v[0]), space.sample(jax.random.key(2), 1)))
    out = tmp_path / "t"
    rc, _, err = main_in_process(["train", "--space", "smash", "--arch", text, "--preset", "tiny", "--data",
                                  image_folder, "--out", out, "--no-progress", "smash.max_layers=3",
                                  "train.epochs=1", "train.batch_size=16"], capsys)
    assert rc == 0, err
    saved = json.loads((out / "result.json").read_text())
    cfg = json.loads((out / "config.json").read_text())["config"]
    assert saved["arch"] == text and 0 <= saved["test_acc"] <= 100
    assert (cfg["train"]["lr"], cfg["train"]["weight_decay"], cfg["train"]["grad_clip"]) == (0.1, 1e-4, 0.0)
    assert cfg["train"]["nesterov"] and cfg["smash"]["max_layers"] == 3
    assert saved["params"] == sum(x.size for x in jax.tree.leaves(
        nnx.state(space.build_network(space.from_string(text), space.config, 10, seed=0), nnx.Param)))


def test_estimate_scales_the_measured_tiny_costs():
    """`--print-config`'s estimate: the smash space's tiny preset at the measured step and candidate
    costs (BENCHMARKS.md 15b, 15c), traced and on the host path (with its compiles); the paper preset
    scaled by the work; the NB201 adapter above the engine's single-path model of the same run."""
    from jaxnas import config, estimate
    from jaxnas.methods import smash

    tiny = config.preset("tiny", "smash", "smash")
    traced = tiny.set({"smash.impl": "traced"})
    host = tiny.set({"smash.impl": "eager"})
    for cfg in (traced, host):
        assert get_space("smash").relative_cost(cfg) == 1.0
    want = 162 * smash.MEMBANK_STEP_S + 60 * smash.MEMBANK_CANDIDATE_S  # 3 epochs of 54 steps; 40+10+10
    assert SMASH.estimate_seconds(traced, 3000) == pytest.approx(want)
    want = (162 * smash.HOST_STEP_S + 60 * smash.HOST_CANDIDATE_S
            + smash.HOST_KERNEL_S * smash.signatures(162)
            + smash.HOST_FORWARD_KERNEL_S * smash.signatures(60))
    assert SMASH.estimate_seconds(host, 3000) == pytest.approx(want)
    assert smash.signatures(100) == 670 and smash.signatures(20_000) > smash.signatures(2000) > 0
    paper = config.preset("paper", "smash", "smash")
    assert get_space("smash").relative_cost(paper.set({"smash.impl": "traced"})) > 20  # N_max 64, 48 slots
    assert SMASH.estimate_seconds(paper.set({"smash.impl": "traced"}), 50000) > 100 * 86400
    assert 86400 < SMASH.estimate_seconds(paper.set({"smash.impl": "eager"}), 50000) < 30 * 86400
    nb = config.preset("tiny", "smash", "nb201")
    assert SMASH.estimate_seconds(nb, 3000) > estimate.supernet_seconds(nb, 3000)
