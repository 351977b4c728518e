"""AZ-NAS's components, ZiCo and the cost proxies against direct float64 computations.

Each candidate's weights (the scorer's per-architecture draw) are moved into xautodl's TinyNetwork
(`torch_twin`, as in test_proxies) in float64; its block outputs, block Jacobian probes and loss
gradients come from hooks and autograd, and each metric is then computed by a plain numpy loop
written from the paper's definition (AZ-NAS: Lee & Ham, CVPR 2024; ZiCo: Li et al., ICLR 2023).

Cost control (XLA:CPU compiles dominate; a traced network gradient alone compiles ~9 s here): two
scorers shared by the tests through module fixtures, C=4, N=1, 16 images of 8x8 -- the traced
program (AZ-NAS and the cost proxies; what accelerators run) and the host path (`jaxnas score`'s
CPU default: AZ-NAS and ZiCo through the eager kernels). ZiCo's traced form differs from its eager
one only in how it splits the batch, checked with a stand-in gradient; its loss gradients are
test_proxies' (grad_norm, snip).
"""
import csv
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special
import scipy.stats
import torch
from helpers import C, N, candidate_params, main_in_process, nchw, torch_twin

from jaxnas.data import find_shared
from jaxnas.proxies import PROXIES, ProxyScorer, aznas, parse_proxies
from jaxnas.proxies.cost import cost_scores
from jaxnas.registry import PROXIES as PROXY_HELP
from jaxnas.spaces import nb201

B, H, SEED = 16, 8, 3
pytestmark = pytest.mark.usefixtures("torch_one_thread")
NEW = ["az_expressivity", "az_progressivity", "az_trainability", "zico", "params", "flops", "layers"]
ARCHS = np.stack([
    nb201.from_string("|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|none~2|"),
    nb201.from_string("|nor_conv_1x1~0|+|none~0|nor_conv_3x3~1|+|avg_pool_3x3~0|skip_connect~1|nor_conv_3x3~2|"),
    # the conv's output reaches nothing: it gets no gradient (ZiCo skips the layer), yet counts as a layer
    nb201.from_string("|nor_conv_3x3~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|"),
    # the cell is the identity: its probe comes back unchanged, trainability -inf as in the reference
    nb201.from_string("|skip_connect~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|"),
])


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(0)
    return rng.normal(size=(B, H, H, 3)).astype(np.float32), rng.integers(0, 10, B).astype(np.int32)


TRACED = [n for n in NEW if n != "zico"]


@pytest.fixture(scope="module")
def scorer():
    return ProxyScorer(",".join(TRACED), C=C, N=N, seed=SEED)


@pytest.fixture(scope="module")
def scores(scorer, batch):
    """Traced: AZ-NAS and the cost proxies in one jitted program."""
    return scorer(ARCHS, *batch)


@pytest.fixture(scope="module")
def host_scores(batch):
    """host_gradients: AZ-NAS and ZiCo through the eager kernels, one candidate at a time; the cost
    proxies still traced."""
    host = ProxyScorer(",".join(NEW), C=C, N=N, seed=SEED, host_gradients=True)
    assert host.host and len(host._eager_fns) == 2 and len(host._fns) == 1
    return host(ARCHS, *batch)


def twin64(scorer, arch, kaiming=False):
    params = candidate_params(scorer, arch)
    return torch_twin(scorer, arch, aznas._kaiming_normal_jit(params) if kaiming else params).double()


def weight_layers(tnet):
    return [m for m in tnet.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]


# ------------------------------------------------------------------------------------------ AZ-NAS
def block_features(tnet, x):
    """The stem's and every cell's / ResNet block's output (NCHW, float64), as the reference's
    `extract_cell_features`, in training mode."""
    feats = []
    hooks = [m.register_forward_hook(lambda mod, inp, out: feats.append(out.detach()))
             for m in [tnet.stem, *tnet.cells]]
    tnet.train()
    with torch.no_grad():
        tnet(x)
    for h in hooks:
        h.remove()
    return feats


def entropy_expressivity(feat):
    """Entropy of the normalised eigenvalues of the channel covariance over all B*H*W positions."""
    c = feat.shape[1]
    v = feat.permute(0, 2, 3, 1).reshape(-1, c).numpy()
    mean = v.mean(0)
    cov = np.zeros((c, c))
    for row in v:
        d = row - mean
        cov += np.outer(d, d)
    s = np.linalg.eigvalsh(cov / len(v))
    return sum(-p * np.log(p + 1e-8) for p in s / s.sum())


def reference_trainability(tnet, feats):
    """Mean over blocks of 2 - sigma - 1/(sigma + 1e-6), sigma the largest singular value of the
    position-averaged outer product of the block's probe g_out and its pullback g_in."""
    scores = []
    for i, cell in enumerate(tnet.cells, start=1):
        f_in = feats[i - 1].clone().requires_grad_(True)
        f_out = cell(f_in)
        shape = tuple(f_out.permute(0, 2, 3, 1).shape)
        g_nhwc = aznas._probe_jit(SEED, i, shape, np.dtype("float32"))  # the scorer's, already compiled
        g_out = nchw(np.asarray(g_nhwc)).double()
        (g_in,) = torch.autograd.grad(f_out, f_in, g_out)
        if g_in.shape == g_out.shape and torch.equal(g_in, g_out):
            scores.append(-np.inf)
            continue
        if g_in.shape[2] != g_out.shape[2]:
            g_in = torch.nn.PixelUnshuffle(g_in.shape[2] // g_out.shape[2])(g_in)
        gi = g_in.permute(0, 2, 3, 1).reshape(-1, g_in.shape[1]).numpy()
        go = g_out.permute(0, 2, 3, 1).reshape(-1, g_out.shape[1]).numpy()
        mat = np.zeros((gi.shape[1], go.shape[1]))
        for a, b in zip(gi, go):
            mat += np.outer(a, b)
        sigma = np.linalg.svd(mat / len(go), compute_uv=False).max()
        scores.append(2.0 - sigma - 1.0 / (sigma + 1e-6))
    return np.mean(scores)


@pytest.mark.parametrize("i", range(len(ARCHS)))
def test_az_nas_components_match_a_direct_computation(scorer, scores, host_scores, i):
    tnet = twin64(scorer, ARCHS[i], kaiming=True)  # the reference re-initialises kaiming-normal
    x = nchw(np.asarray(aznas._noise_jit(SEED, (B, H, H, 3), np.dtype("float32")))).double()  # as the scorer
    feats = block_features(tnet, x)
    assert len(feats) == 3 * N + 3
    expr = np.array([entropy_expressivity(f) for f in feats])
    want = reference_trainability(tnet, feats)
    for s in (scores, host_scores):
        assert s["az_expressivity"][i] == pytest.approx(expr.sum(), rel=1e-4)
        assert s["az_progressivity"][i] == pytest.approx(min(np.diff(expr)), rel=1e-3, abs=1e-4)
        assert s["az_expressivity_psd"][i] == pytest.approx(expr.sum(), rel=1e-4)  # no rounding trouble here
        assert s["az_progressivity_psd"][i] == pytest.approx(min(np.diff(expr)), rel=1e-3, abs=1e-4)
        if np.isinf(want):
            assert s["az_trainability"][i] == want == -np.inf
        else:
            assert s["az_trainability"][i] == pytest.approx(want, rel=1e-4, abs=1e-5)


def test_forward_only_az_nas_stays_traced_under_host_gradients(scores, batch):
    """Without trainability AZ-NAS differentiates nothing: host_gradients leaves it in the jitted
    program (chosen op alone), with the same scores as the full traced path; az_spectrum="psd"
    makes the psd spectrum's scores the proxies'."""
    fwd = ProxyScorer("az_expressivity,az_progressivity", C=C, N=N, seed=SEED, host_gradients=True,
                      az_spectrum="psd")
    assert not fwd.host and not fwd._eager_fns and fwd._fns[0].keywords["impl"] == "switch"
    # with fast training on the host, forward-only AZ-NAS is still one of the traced functions
    ft = ProxyScorer("az_expressivity", C=C, N=N, seed=SEED, host_gradients=True, fast_train_steps=1)
    assert ft.host and not ft._eager_fns and ft._fns[0].func is aznas.az_scores
    got = fwd(ARCHS, *batch)
    for k in ("az_expressivity", "az_progressivity"):
        np.testing.assert_array_equal(got[k], got[f"{k}_psd"])
        np.testing.assert_allclose(got[k], scores[f"{k}_psd"], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("rank", [2, 32])
def test_psd_spectrum_survives_float32_rounding_of_a_low_rank_covariance(rank):
    """A rank-deficient covariance (deep NB201 features): its float32 eigenvalues near zero come out
    of either sign, and the reference's entropy is NaN; the psd spectrum gives the float64 entropy."""
    rng = np.random.default_rng(rank)
    f = (rng.standard_normal((2048, rank)) @ rng.standard_normal((rank, 64)) * 100).astype(np.float32)
    x = f.astype(np.float64) - f.astype(np.float64).mean(0)
    s = np.clip(np.linalg.eigvalsh(x.T @ x / len(x)), 0, None)  # exact zeros, up to float64 rounding
    p = s / s.sum()
    want = np.sum(-p * np.log(p + 1e-8))
    feats = jnp.asarray(f.reshape(2, 32, 32, 64))
    assert np.isnan(float(aznas.entropy_of_covariance(feats)))
    assert float(aznas.entropy_of_covariance(feats, "psd")) == pytest.approx(want, rel=1e-4)
    with pytest.raises(ValueError, match="spectrum"):
        aznas.az_scores(None, None, None, None, feats, None, spectrum="float64")


def test_kaiming_normal_turns_the_default_draw_into_kaiming_normal_fan_in():
    fan_in = 3 * 3 * 8
    u = np.random.default_rng(1).uniform(-1, 1, (3, 3, 8, 5000)).astype(np.float32) / np.sqrt(fan_in)
    tree = {"conv": {"kernel": jnp.asarray(u)}, "bn": {"scale": jnp.ones(4)}}
    got = jax.jit(aznas.kaiming_normal)(tree)
    np.testing.assert_array_equal(np.asarray(got["bn"]["scale"]), np.ones(4))  # only kernels change
    w = np.asarray(got["conv"]["kernel"], np.float64)
    # the normal quantile of the uniform's CDF, in float64 (away from the far tails float32 resolves)
    want = scipy.special.ndtri((u.astype(np.float64) * np.sqrt(fan_in) + 1) / 2) * np.sqrt(2 / fan_in)
    core = np.abs(want) < 3 * np.sqrt(2 / fan_in)
    np.testing.assert_allclose(w[core], want[core], rtol=1e-4, atol=1e-6)
    assert scipy.stats.kstest(w.ravel(), "norm", args=(0, np.sqrt(2 / fan_in))).pvalue > 0.01


# ------------------------------------------------------------------------------------------- ZiCo
def reference_zico(tnet, images, labels, batches=2):
    """Sum over conv / linear layers of log(sum over weights of mean|g| / std(g)) across the
    gradients of `batches` consecutive batches (weights with std 0 left out, layers summing to 0
    skipped), as the AZ-NAS authors' ZiCo (zeroed between batches)."""
    grads = {}
    n = len(labels) // batches
    tnet.train()
    for b in range(batches):
        tnet.zero_grad(set_to_none=True)
        x, y = nchw(images[b * n:(b + 1) * n]).double(), torch.from_numpy(labels[b * n:(b + 1) * n]).long()
        torch.nn.functional.cross_entropy(tnet(x)[1], y).backward()
        for k, m in enumerate(weight_layers(tnet)):
            if m.weight.grad is not None:
                grads.setdefault(k, []).append(m.weight.grad.reshape(-1).numpy().copy())
    total = 0.0
    for g in grads.values():
        g = np.array(g)
        std, mean_abs = g.std(0), np.abs(g).mean(0)
        ratio = sum(m / s for m, s in zip(mean_abs, std) if s != 0)
        if ratio != 0:
            total += np.log(ratio)
    return total


@pytest.mark.parametrize("i", range(len(ARCHS)))
def test_zico_matches_a_direct_computation(scorer, host_scores, batch, i):
    want = reference_zico(twin64(scorer, ARCHS[i]), *batch)
    assert host_scores["zico"][i] == pytest.approx(want, rel=1e-4)


def test_traced_zico_splits_the_batch_as_the_eager_one(batch, monkeypatch):
    """The traced ZiCo (lax.map over the batches) with a stand-in for the loss gradient: each
    batch's 'gradient' of a layer is a function of that batch's images alone, so the split is seen."""
    from jaxnas.proxies import gradient

    def fake_grads(graphdef, params, stats, arch, images, labels):
        m = images.mean((1, 2))  # [b, 3]
        return {"a": {"kernel": m.T @ m + arch[0].astype(m.dtype)}, "b": {"kernel": jnp.abs(m).sum(0)},
                "c": {"bias": m[0]}}

    monkeypatch.setattr(gradient, "_loss_grads", fake_grads)
    x, y = batch
    arch = jnp.asarray(ARCHS[0])
    got = jax.jit(lambda x, y: gradient.zico(None, None, None, arch, x, y, batches=4)["zico"])(x, y)
    per_batch = [gradient._kernels(fake_grads(None, None, None, arch, x[k * 4:(k + 1) * 4],
                                              None)) for k in range(4)]
    want = 0.0
    for layer in zip(*per_batch):
        g = np.array([np.asarray(v, np.float64).ravel() for v in layer])
        ratio = sum(m / s for m, s in zip(np.abs(g).mean(0), g.std(0)) if s != 0)
        want += np.log(ratio) if ratio else 0.0
    assert float(got) == pytest.approx(want, rel=1e-5)
    with pytest.raises(ValueError, match="equal batches"):
        gradient.zico(None, None, None, arch, x[:5], y[:5])


# ------------------------------------------------------------------------------------------- cost
def direct_flops(tnet, x):
    """Multiply-accumulates of the conv and linear layers of one image (NB201's convention)."""
    total = [0]

    def conv(m, inp, out):
        total[0] += (m.kernel_size[0] * m.kernel_size[1] * m.in_channels * m.out_channels
                     * out.shape[2] * out.shape[3])

    def linear(m, inp, out):
        total[0] += m.in_features * m.out_features + m.out_features

    hooks = [m.register_forward_hook(conv if isinstance(m, torch.nn.Conv2d) else linear)
             for m in weight_layers(tnet)]
    with torch.no_grad():
        tnet.eval()(x[:1])
    for h in hooks:
        h.remove()
    return total[0]


@pytest.mark.parametrize("i", range(len(ARCHS)))
def test_cost_proxies_count_the_standalone_network(scorer, scores, host_scores, batch, i):
    tnet = twin64(scorer, ARCHS[i])
    for s in (scores, host_scores):
        assert s["params"][i] == sum(p.numel() for p in tnet.parameters())
        assert s["layers"][i] == len(weight_layers(tnet))
        assert s["flops"][i] == direct_flops(tnet, nchw(batch[0]).double())


def test_params_proxy_is_the_nb201_tables_count():
    """At C=16, N=5 the params proxy gives NB201's CIFAR-10 counts (every architecture is checked
    against the table in test_space_cost; here a handful through the proxy)."""
    path = find_shared("shared/data/nb201/naswot_v1_cifar10_arch_score_acc.csv")
    if path is None:
        pytest.skip("NB201 table not found")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))[:200:40]
    archs = np.stack([nb201.from_string(r["cellstr"]) for r in rows])
    got = jax.vmap(lambda a: cost_scores(None, None, None, a, jnp.zeros((1, 32, 32, 3)), None, C=16, N=5,
                                         num_classes=10)["params"])(jnp.asarray(archs))
    np.testing.assert_allclose(np.asarray(got) / 1e6, [float(r["params"]) for r in rows], atol=5e-7)


# -------------------------------------------------------------------------------- registry and CLI
def test_every_new_proxy_is_registered():
    assert parse_proxies(",".join(NEW)) == NEW
    assert all(PROXIES[n][1] == n and PROXY_HELP[n] for n in NEW)


def test_cli_score_with_the_new_proxies(image_folder, tmp_path, capsys):
    out = tmp_path / "score"
    rc, _, err = main_in_process(["score", "--proxy", "params,flops,layers", "--archs", "4", "--data",
                                  image_folder,
                                   "--out", out, "--no-progress", "nb201.C=2", "nb201.N=1",
                                  "proxy.batch_size=16",
                                   "eval.chunk_size=4"], capsys)
    assert rc == 0, err
    with open(out / "scores.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 and list(rows[0]) == ["index", "arch", "params", "flops", "layers"]
    for r in rows:
        arch = nb201.from_string(r["arch"])
        cost = nb201.SPACE.cost(arch, 2, 1, 10)
        assert float(r["params"]) == int(cost["params"]) and float(r["flops"]) == int(cost["flops"])
    assert json.loads((out / "summary.json").read_text())["proxies"] == ["params", "flops", "layers"]
