"""Pure pieces of the weight step against PyTorch: SGD (with unsampled-op skipping), gradient
clipping, the cosine schedule; and `decay_unsampled` at the method level on the supernet."""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

from jaxnas.config import Config
from jaxnas.methods import RSPS
from jaxnas.spaces import nb201
from jaxnas.spaces.arch import Choice
from jaxnas.spaces.nb201.networks import used_params
from jaxnas.train import optim, steps
from jaxnas.train.steps import clip_grad_norm, cosine_lr, scheduled_lr

LR, MU, WD = 0.1, 0.9, 5e-4
SHAPES = {"a": (3, 4), "b": (5,), "c": (2, 3, 3)}
# test-only speed-up: XLA:CPU compiles several times faster at LLVM -O0; semantics are unchanged
FAST_COMPILE = {"xla_backend_optimization_level": 0}


def _random_tree(rng, scale=1.0):
    return {k: (scale * rng.standard_normal(s)).astype(np.float32) for k, s in SHAPES.items()}


TX = optim.sgd(LR, MU, True, WD)


def momentum(state):
    """The SGD momentum buffers of a search state (or of an optimizer state)."""
    opt_state = getattr(state, "opt_state", state)
    return opt_state.inner_state.momentum


@functools.partial(jax.jit, static_argnames="with_used")
def _sgd(params, opt_state, grads, lr, used, with_used):
    updates, opt_state = TX.update(grads, optim.with_learning_rate(opt_state, lr), params,
                                   used=used if with_used else None)
    return optax.apply_updates(params, updates), opt_state


def _torch_sgd_run(params, grads_per_step, lrs, none_grad=()):
    """torch.optim.SGD over the steps; `none_grad` holds (step, name) pairs whose grad is None."""
    tp = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    opt = torch.optim.SGD(list(tp.values()), lr=LR, momentum=MU, nesterov=True, weight_decay=WD)
    for t, (grads, lr) in enumerate(zip(grads_per_step, lrs)):
        for group in opt.param_groups:
            group["lr"] = lr
        for k, p in tp.items():
            p.grad = None if (t, k) in none_grad else torch.tensor(grads[k])
        opt.step()
    bufs = {k: opt.state[p]["momentum_buffer"].numpy() if "momentum_buffer" in opt.state[p] else None
            for k, p in tp.items()}
    return {k: p.detach().numpy() for k, p in tp.items()}, bufs


def _jax_sgd_run(params, grads_per_step, lrs, used_per_step=None):
    p = {k: jnp.asarray(v) for k, v in params.items()}
    m = TX.init(p)
    for t, (grads, lr) in enumerate(zip(grads_per_step, lrs)):
        used = None if used_per_step is None else {k: jnp.bool_(u) for k, u in used_per_step[t].items()}
        p, m = _sgd(p, m, grads, jnp.float32(lr), used, with_used=used is not None)
    return jax.device_get(p), jax.device_get(momentum(m))


@pytest.fixture
def problem():
    rng = np.random.default_rng(0)
    return _random_tree(rng), [_random_tree(rng) for _ in range(3)], [0.1, 0.07, 0.03]


def test_sgd_matches_torch_nesterov_with_weight_decay(problem):
    params, grads, lrs = problem
    want, want_bufs = _torch_sgd_run(params, grads, lrs)
    got, got_bufs = _jax_sgd_run(params, grads, lrs)
    for k in SHAPES:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(got_bufs[k], want_bufs[k], rtol=1e-6, atol=1e-7)
        assert not np.allclose(got[k], params[k])


def test_sgd_skips_unused_like_torch_none_grad(problem):
    """used=False == PyTorch >= 2.0 with grad None: value and momentum buffer untouched that step."""
    params, grads, lrs = problem
    # "b" takes part in step 0, is skipped in step 1 (momentum kept, not decayed), back in step 2;
    # "c" never takes part
    skipped = {(1, "b"), (0, "c"), (1, "c"), (2, "c")}
    used = [{k: (t, k) not in skipped for k in SHAPES} for t in range(3)]
    want, want_bufs = _torch_sgd_run(params, grads, lrs, none_grad=skipped)
    got, got_bufs = _jax_sgd_run(params, grads, lrs, used)
    for k in ("a", "b"):
        np.testing.assert_allclose(got[k], want[k], rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(got_bufs[k], want_bufs[k], rtol=1e-6, atol=1e-7)
    assert np.array_equal(got["c"], params["c"]) and want_bufs["c"] is None
    assert not np.any(got_bufs["c"])
    # the skip really mattered: with step 1 applied to "b", the result differs
    all_used, _ = _jax_sgd_run(params, grads, lrs, [{k: True for k in SHAPES}] * 3)
    assert not np.allclose(all_used["b"], got["b"])
    # one step with "b" skipped leaves it and its buffer exactly as after step 0
    after0, bufs0 = _jax_sgd_run(params, grads[:1], lrs[:1], used[:1])
    after1, bufs1 = _jax_sgd_run(params, grads[:2], lrs[:2], used[:2])
    assert np.array_equal(after1["b"], after0["b"]) and np.array_equal(bufs1["b"], bufs0["b"])


def test_sgd_without_mask_moves_zero_grad_tensors_like_torch_zero_grad(problem):
    """used=None (decay_unsampled=True): a zero-gradient tensor still moves by decay and momentum,
    as with PyTorch < 2.0's zeroed gradients; with None gradients torch leaves it alone."""
    params, grads, lrs = problem
    grads = [dict(g) for g in grads]
    for g in grads[1:]:
        g["b"] = np.zeros_like(g["b"])  # "b" gets gradient in step 0 only
    for g in grads:
        g["c"] = np.zeros_like(g["c"])  # "c" never gets gradient
    want, want_bufs = _torch_sgd_run(params, grads, lrs)  # zero tensors, not None
    got, got_bufs = _jax_sgd_run(params, grads, lrs)
    for k in SHAPES:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(got_bufs[k], want_bufs[k], rtol=1e-6, atol=1e-7)
    assert not np.allclose(got["c"], params["c"], rtol=0, atol=1e-7)  # decay alone moved it
    none, _ = _torch_sgd_run(params, grads, lrs, none_grad={(t, "c") for t in range(3)})
    assert np.array_equal(none["c"], params["c"])


@pytest.mark.parametrize("scale, max_norm", [(10.0, 5.0), (0.01, 5.0), (3.0, 0.5)])
def test_clip_grad_norm_matches_torch(scale, max_norm):
    grads = _random_tree(np.random.default_rng(1), scale)
    tp = [torch.zeros(s, requires_grad=True) for s in SHAPES.values()]
    for p, g in zip(tp, grads.values()):
        p.grad = torch.tensor(g)
    want_norm = torch.nn.utils.clip_grad_norm_(tp, max_norm)
    clipped, norm = clip_grad_norm({k: jnp.asarray(v) for k, v in grads.items()}, max_norm)
    np.testing.assert_allclose(float(norm), float(want_norm), rtol=1e-6)
    for k, p in zip(SHAPES, tp):
        np.testing.assert_allclose(np.asarray(clipped[k]), p.grad.numpy(), rtol=1e-6, atol=1e-8)
    was_clipped = float(want_norm) > max_norm
    assert was_clipped == (not np.allclose(np.asarray(clipped["a"]), grads["a"]))


def test_clip_grad_norm_off_returns_grads_and_norm():
    grads = {k: jnp.asarray(v) for k, v in _random_tree(np.random.default_rng(2), 100.0).items()}
    out, norm = clip_grad_norm(grads, 0.0)
    want = math.sqrt(sum(float(np.sum(np.square(np.asarray(g)))) for g in grads.values()))
    np.testing.assert_allclose(float(norm), want, rtol=1e-6)
    assert all(np.array_equal(np.asarray(out[k]), np.asarray(grads[k])) for k in grads)


def test_cosine_lr_endpoints_midpoint_and_torch():
    lr, lr_min, total = 0.025, 0.001, 100
    assert float(cosine_lr(0, total, lr, lr_min)) == pytest.approx(lr, rel=1e-6)
    assert float(cosine_lr(total // 2, total, lr, lr_min)) == pytest.approx((lr + lr_min) / 2, rel=1e-6)
    assert float(cosine_lr(total, total, lr, lr_min)) == pytest.approx(lr_min, rel=1e-5)
    assert float(cosine_lr(total + 7, total, lr, lr_min)) == pytest.approx(lr_min, rel=1e-5)  # clamped
    # every step against torch's CosineAnnealingLR (stepped per batch)
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total, eta_min=lr_min)
    want = []
    for _ in range(total + 1):
        want.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    got = jax.jit(jax.vmap(lambda s: cosine_lr(s, total, lr, lr_min)))(jnp.arange(total + 1))
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-8)


def test_scheduled_lr_warmup_and_per_round_restarts_against_a_plain_loop():
    lr, lr_min, per_round, rounds, warm = 0.1, 0.002, 12, 3, 4
    got = jax.jit(jax.vmap(lambda s: scheduled_lr(s, per_round, rounds, warm, lr, lr_min, True)))(
        jnp.arange(per_round * rounds))
    want = []
    for step in range(per_round * rounds):  # the definition, written out
        t = step % per_round
        if t < warm:
            want.append(lr * (t + 1) / warm)
        else:
            u = (t - warm) / (per_round - warm)
            want.append(lr_min + 0.5 * (lr - lr_min) * (1 + np.cos(np.pi * u)))
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5)
    # no warmup, one schedule over the run: exactly cosine_lr (the loop's schedule before)
    steps = jnp.arange(per_round * rounds + 2)
    np.testing.assert_array_equal(
        np.asarray(jax.vmap(lambda s: scheduled_lr(s, per_round, rounds, 0, lr, lr_min, False))(steps)),
        np.asarray(jax.vmap(lambda s: cosine_lr(s, per_round * rounds, lr, lr_min))(steps)))


# --------------------------------------------------------------------- method level: decay_unsampled


def _edge_kernels(params, cell, edge, op):
    return np.asarray(params["cells"][cell]["edges"][edge][op]["conv"]["kernel"])


@pytest.mark.parametrize("impl", ["merged", "eager"])
def test_rsps_weight_step_masks_unsampled_ops_only_without_decay_unsampled(monkeypatch, impl):
    """RSPS.weight_step hands the weight step (traced or eager) the used_params mask of the sampled
    architecture when decay_unsampled=False and no mask (used=None) when True (without compiling)."""
    seen = {}

    def spy(tx, grad_clip, graphdef, state, images, labels, lr, *args, used=None, host=None, **kw):
        seen["used"], seen["args"], seen["host"] = used, args, host
        return state, {}

    monkeypatch.setattr(steps, "weight_step", spy)
    cfg = Config().set({"nb201.C": 4, "nb201.N": 1, "nb201.single_path_impl": impl})
    arch = jnp.asarray([3, 2, 0, 1, 4, 3], jnp.int32)
    state = RSPS(cfg, nb201.SPACE, 10).init()
    RSPS(cfg, nb201.SPACE, 10).weight_step(state, None, None, arch, 0.1)
    assert (seen["host"] is not None) == (impl == "eager")  # the host passes only on the eager path
    want = used_params(state.params, arch)
    assert jax.tree.structure(seen["used"]) == jax.tree.structure(want)
    assert all(bool(a) == bool(b) for a, b in zip(jax.tree.leaves(seen["used"]), jax.tree.leaves(want)))
    assert isinstance(seen["args"][0], Choice) and np.array_equal(seen["args"][0].value, arch)
    # e.g. edge 0 samples nor_conv_3x3: its 3x3 kernel takes part, its 1x1 kernel does not
    edge0 = seen["used"]["cells"][0]["edges"][0]
    assert bool(edge0["conv3"]["conv"]["kernel"]) and not bool(edge0["conv1"]["conv"]["kernel"])
    assert bool(seen["used"]["stem"]["conv"]["kernel"])
    RSPS(cfg.set({"train.decay_unsampled": True}), nb201.SPACE, 10).weight_step(state, None, None, arch, 0.1)
    assert seen["used"] is None


def test_decay_unsampled_semantics_on_the_supernet():
    """Two supernet weight steps (3x3 convs sampled, then 1x1 convs): with the used_params mask
    (decay_unsampled=False) unsampled kernels keep weights and momentum; without it (True, used=None;
    an all-True mask here so both share one compiled program) they move by decay and momentum."""
    cfg = Config().set({"nb201.C": 4, "nb201.N": 1, "train.batch_size": 8})
    method = RSPS(cfg, nb201.SPACE, 10)
    state = method.init()
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((8, 16, 16, 3)), jnp.float32)
    y = jnp.asarray(np.arange(8) % 10, jnp.int32)
    lr = 0.1

    @functools.partial(jax.jit, compiler_options=FAST_COMPILE)
    def step(s, arch, used):
        return steps.weight_step(method.tx, cfg.train.grad_clip, method.graphdef, s, x, y, lr, Choice(arch),
                                 used=used)[0]

    conv3 = jnp.full((6,), nb201.OPS.index("nor_conv_3x3"), jnp.int32)
    conv1 = jnp.full((6,), nb201.OPS.index("nor_conv_1x1"), jnp.int32)
    everything = jax.tree.map(lambda _: jnp.bool_(True), state.params)
    skip1 = step(state, conv3, used_params(state.params, conv3))  # decay_unsampled=False
    skip2 = step(skip1, conv1, used_params(state.params, conv1))
    decay1 = step(state, conv3, everything)  # decay_unsampled=True
    decay2 = step(decay1, conv1, everything)
    init, skip1, skip2, decay1, decay2 = jax.device_get((state, skip1, skip2, decay1, decay2))

    for cell in (0, 2, 4):  # the search cells
        for e in range(6):
            k = functools.partial(_edge_kernels, cell=cell, edge=e)
            # sampled ops train under both settings
            assert not np.array_equal(k(skip1.params, op="conv3"), k(init.params, op="conv3"))
            assert not np.array_equal(k(skip2.params, op="conv1"), k(skip1.params, op="conv1"))
            # decay_unsampled=False: unsampled weights and momentum are left exactly as they were
            assert np.array_equal(k(skip1.params, op="conv1"), k(init.params, op="conv1"))
            assert not np.any(k(momentum(skip1), op="conv1"))
            assert np.array_equal(k(skip2.params, op="conv3"), k(skip1.params, op="conv3"))
            assert np.array_equal(k(momentum(skip2), op="conv3"), k(momentum(skip1), op="conv3"))
            # decay_unsampled=True: the unsampled 3x3 conv of step 2 moves by decay + momentum exactly
            p1, buf1 = k(decay1.params, op="conv3"), k(momentum(decay1), op="conv3")
            assert np.any(buf1)  # momentum exists after step 1
            d = cfg.train.weight_decay * p1  # its gradient is zero
            buf2 = cfg.train.momentum * buf1 + d
            np.testing.assert_allclose(k(momentum(decay2), op="conv3"), buf2, rtol=1e-5, atol=1e-9)
            np.testing.assert_allclose(k(decay2.params, op="conv3"),
                                       p1 - lr * (d + cfg.train.momentum * buf2),
                                       rtol=1e-5, atol=1e-9)
            assert not np.array_equal(k(decay2.params, op="conv3"), p1)
            # and in step 1 the never-sampled 1x1 conv already decays
            assert not np.array_equal(k(decay1.params, op="conv1"), k(init.params, op="conv1"))
    # same gradients either way: the sampled weights agree after step 1
    np.testing.assert_array_equal(_edge_kernels(skip1.params, 0, 0, "conv3"),
                                  _edge_kernels(decay1.params, 0, 0, "conv3"))


def test_eager_weight_step_compiles_its_update_once_and_equals_the_traced_step():
    """The eager step (CPU default) over architectures that use different ops: its jitted update
    compiles once (the zero gradients of ops that did not run must not change its cache key), and
    each step equals the traced `weight_step` on the same state."""
    cfg = Config().set({"nb201.C": 4, "nb201.N": 1, "train.batch_size": 8, "nb201.single_path_impl": "eager"})
    method = RSPS(cfg, nb201.SPACE, 10)
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.standard_normal((8, 16, 16, 3)), jnp.float32)
    y = jnp.asarray(np.arange(8) % 10, jnp.int32)
    traced = jax.jit(lambda s, a: steps.weight_step(method.tx, cfg.train.grad_clip, method.graphdef, s, x, y,
                                                    0.1, Choice(a),
                                                    used=used_params(s.params, a))[0],
                     compiler_options=FAST_COMPILE)
    update = steps._jitted_update
    state, sizes = method.init(), []
    for arch in ([3, 3, 3, 3, 3, 3], [2, 0, 1, 4, 2, 0], [1, 1, 1, 1, 1, 1], [4, 3, 2, 1, 0, 3]):
        arch = np.asarray(arch, np.int32)
        want = jax.device_get(traced(state, jnp.asarray(arch)))
        state = method.weight_step(state, x, y, arch, 0.1)[0]
        for a, b in zip(jax.tree.leaves(jax.device_get((state.params, state.stats, momentum(state)))),
                        jax.tree.leaves((want.params, want.stats, momentum(want)))):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
        sizes.append(update.cache_size())
    # after the first step (the fresh state's placement differs from a jitted output's), no recompiles
    assert sizes[1] == sizes[2] == sizes[3], sizes
