"""`jaxnas.train.optim.make` against torch.optim.SGD / Adam / AdamW step by step: injected learning
rate changed between steps, per-leaf decay masks (PyTorch: a second parameter group with weight
decay 0), skipped parameters (PyTorch: a None gradient); unmasked SGD bit for bit `optim.sgd`."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

from jaxnas.train import optim, steps

WD = 0.05
LRS = {"sgd": [0.1, 0.05, 0.2, 0.02, 0.1], "adam": [1e-2, 5e-3, 2e-2, 1e-3, 1e-2]}
LRS["adamw"] = LRS["adam"]


def _problem(seed=0, n_steps=5):
    rng = np.random.default_rng(seed)
    params = {"w": rng.standard_normal((4, 3)).astype(np.float32),
              "b": rng.standard_normal(3).astype(np.float32)}
    grads = [{k: rng.standard_normal(v.shape).astype(np.float32) for k,
              v in params.items()} for _ in range(n_steps)]
    return params, grads


def _torch_opt(kind, tp, masked, options):
    groups = ([{"params": [tp["w"]], "weight_decay": WD},
               {"params": [tp["b"]], "weight_decay": 0.0}] if masked
              else [{"params": list(tp.values()), "weight_decay": WD}])
    if kind == "sgd":
        return torch.optim.SGD(groups, lr=1.0, momentum=options.get("momentum", 0.9),
                               nesterov=options.get("nesterov", True))
    cls = torch.optim.Adam if kind == "adam" else torch.optim.AdamW
    return cls(groups, lr=1.0, betas=options.get("betas", (0.9, 0.999)), eps=options.get("eps", 1e-8))


CASES = [  # (kind, mask form, kind-specific options)
    ("sgd", None, {}), ("sgd", "callable", {}), ("sgd", "tree", {"momentum": 0.5, "nesterov": False}),
    ("adam", None, {}), ("adam", "callable", {"betas": (0.5, 0.999), "eps": 1e-4}),  # SMASH's Adam
    ("adam", "tree", {"betas": (0.0, 0.999)}),  # NSE's architecture Adam: beta1 0
    ("adamw", None, {}), ("adamw", "callable", {"betas": (0.8, 0.99)}), ("adamw", "tree", {}),
]


@pytest.mark.parametrize("kind,mask,options", CASES,
                         ids=[f"{k}-{m}-{i}" for i, (k, m, _) in enumerate(CASES)])
def test_make_matches_torch_step_by_step(kind, mask, options):
    p0, grads = _problem()
    decay_mask = {None: None, "callable": optim.no_decay_on_bn_and_bias,
                  "tree": {"w": True, "b": False}}[mask]
    tx = optim.make(kind, LRS[kind][0], weight_decay=WD, decay_mask=decay_mask, **options)
    tp = {k: torch.nn.Parameter(torch.tensor(v)) for k, v in p0.items()}
    topt = _torch_opt(kind, tp, mask is not None, options)

    params = jax.tree.map(jnp.asarray, p0)
    opt_state = tx.init(params)
    step = jax.jit(lambda p, s, g: tx.update(g, s, p))
    for lr, g in zip(LRS[kind], grads):
        for group in topt.param_groups:
            group["lr"] = lr
        for k, t in tp.items():
            t.grad = torch.tensor(g[k])
        topt.step()
        updates, opt_state = step(params, optim.with_learning_rate(opt_state, lr),
                                  jax.tree.map(jnp.asarray, g))
        params = optax.apply_updates(params, updates)
        for k, t in tp.items():
            np.testing.assert_allclose(np.asarray(params[k]), t.detach().numpy(), rtol=1e-6, atol=1e-7,
                                       err_msg=k)
    assert float(opt_state.hyperparams["learning_rate"]) == np.float32(LRS[kind][-1])
    # the decay mask matters at this tolerance: the bias moved differently from an unmasked run
    if mask is not None:
        unmasked = optim.make(kind, LRS[kind][0], weight_decay=WD, **options)
        s, p = unmasked.init(jax.tree.map(jnp.asarray, p0)), jax.tree.map(jnp.asarray, p0)
        for lr, g in zip(LRS[kind], grads):
            u, s = unmasked.update(jax.tree.map(jnp.asarray, g), optim.with_learning_rate(s, lr), p)
            p = optax.apply_updates(p, u)
        assert np.abs(np.asarray(p["b"]) - np.asarray(params["b"])).max() > 1e-5
        np.testing.assert_allclose(np.asarray(p["w"]), np.asarray(params["w"]), rtol=1e-6, atol=1e-7)


def test_make_sgd_is_sgd_bit_for_bit():
    """Unmasked: `sgd(...)` itself; masked with every leaf decayed: the same values bit for bit."""
    p0, grads = _problem(1)
    ref = optim.sgd(0.1, 0.9, True, WD)
    assert optim.make("sgd", 0.1, weight_decay=WD) is ref
    all_true = optim.make("sgd", 0.1, weight_decay=WD, decay_mask=lambda p: jax.tree.map(lambda _: True, p))
    results = []
    for tx in (ref, optim.make("sgd", lr=0.1, weight_decay=WD, momentum=0.9, nesterov=True), all_true):
        params = jax.tree.map(jnp.asarray, p0)
        s = tx.init(params)
        update = jax.jit(lambda p, s, g, tx=tx: tx.update(g, s, p))
        for lr, g in zip([0.1, 0.3, 0.05, 0.2], grads):
            u, s = update(params, optim.with_learning_rate(s, lr), g)
            params = optax.apply_updates(params, u)
        results.append((params, s.inner_state.momentum))
    for other in results[1:]:
        jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)), results[0],
                     other)


@pytest.mark.parametrize("kind", ["sgd", "adamw"])
def test_used_skips_like_a_torch_none_gradient(kind):
    """A parameter without a gradient (PyTorch: grad None) neither moves nor decays, and its state
    (momentum; Adam's moments and per-parameter step count) waits; through `steps.update`."""
    p0, grads = _problem(2, 4)
    lrs = LRS[kind][:4]
    used_at = [{"w": True, "b": True}, {"w": True, "b": False}, {"w": False, "b": True},
               {"w": True, "b": True}]
    tx = optim.make(kind, lrs[0], weight_decay=WD)
    tp = {k: torch.nn.Parameter(torch.tensor(v)) for k, v in p0.items()}
    topt = _torch_opt(kind, tp, False, {})
    params = jax.tree.map(jnp.asarray, p0)
    opt_state = tx.init(params)
    for lr, g, used in zip(lrs, grads, used_at):
        for group in topt.param_groups:
            group["lr"] = lr
        for k, t in tp.items():
            t.grad = torch.tensor(g[k]) if used[k] else None
        topt.step()
        params, opt_state, _ = steps.update(tx, 0.0, params, opt_state, g, lr, used=used)
        for k, t in tp.items():
            np.testing.assert_allclose(np.asarray(params[k]), t.detach().numpy(), rtol=1e-6, atol=1e-7,
                                       err_msg=k)
    if kind == "adamw":
        assert {k: int(v) for k, v in opt_state.inner_state.step.items()} == {"w": 3, "b": 3}


def test_no_decay_on_bn_and_bias_and_options():
    params = {"conv": {"kernel": jnp.zeros((3, 3, 4, 8))}, "bn": {"scale": jnp.ones(8), "bias": jnp.zeros(8)},
              "fc": {"kernel": jnp.zeros((8, 10)), "bias": jnp.zeros(10)}, "t": jnp.zeros(())}
    assert optim.no_decay_on_bn_and_bias(params) == {
        "conv": {"kernel": True}, "bn": {"scale": False, "bias": False},
        "fc": {"kernel": True, "bias": False},
        "t": False}
    # cached: equal settings, equal object (a bool tree compared by value)
    mask = {"w": True, "b": False}
    assert optim.make("adam", 1e-3, decay_mask=mask) is optim.make("adam", 1e-3, decay_mask=dict(mask))
    with pytest.raises(ValueError, match="Adam's options"):
        optim.make("sgd", 0.1, betas=(0.9, 0.99))
    with pytest.raises(ValueError, match="SGD's options"):
        optim.make("adamw", 0.1, momentum=0.9)
    with pytest.raises(ValueError, match="unknown optimizer"):
        optim.make("rmsprop", 0.1)
    with pytest.raises(ValueError, match="one bool per parameter"):
        optim.make("sgd", 0.1, decay_mask={"w": np.ones(3, bool)})
