"""Training-free proxies against direct, unvectorised PyTorch computations on small networks.

Each candidate's weights come from the scorer's per-architecture initialisation; they are moved
into xautodl's TinyNetwork, and the reference procedure (forward hooks on every nn.ReLU for NASWOT,
autograd for the gradient proxies) is run on it one architecture at a time, in float64 numpy.
"""
import csv
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from helpers import C, N, candidate_params, main_in_process, nchw, torch_twin

from jaxnas.nn.ops import BN_EPS
from jaxnas.proxies import ProxyScorer, activation_scores
from jaxnas.proxies.run import select_archs
from jaxnas.spaces import nb201
from jaxnas.spaces.arch import Choice
from jaxnas.train import state as state_lib
from jaxnas.train import steps

B, H = 8, 8
ARCHS = np.stack([
    nb201.from_string("|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|none~2|"),
    nb201.from_string("|nor_conv_1x1~0|+|none~0|nor_conv_3x3~1|+|avg_pool_3x3~0|skip_connect~1|nor_conv_3x3~2|"),
    # node 1 all-zero (1<-0 none): the conv reading it is skipped by the scorer's "zero" pruning
    nb201.from_string("|none~0|+|nor_conv_3x3~0|nor_conv_1x1~1|+|nor_conv_1x1~0|avg_pool_3x3~1|skip_connect~2|"),
])
ALL = "naswot,das,grad_norm,snip,synflow,jacov"
pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(0)
    return (rng.normal(size=(B, H, H, 3)).astype(np.float32), rng.integers(0, 10, B).astype(np.int32))


@pytest.fixture(scope="module")
def scorer():
    return ProxyScorer(ALL, C=C, N=N, seed=3, chunk_size=1, das_weight=0.5)


@pytest.fixture(scope="module")
def scores(scorer, batch):
    return scorer(ARCHS, *batch)


def reference_naswot(tnet, x):
    """The reference procedure: hook every nn.ReLU's input, K += c c^T + (1-c)(1-c)^T, slogdet.
    Returns (log|K|, N_A, K)."""
    k = np.zeros((B, B))
    units = [0]

    def hook(module, inp, out):
        c = (inp[0].reshape(B, -1) > 0).double().numpy()
        k[:] += c @ c.T + (1 - c) @ (1 - c).T
        units[0] += c.shape[1]

    hooks = [m.register_forward_hook(hook) for m in tnet.modules() if isinstance(m, torch.nn.ReLU)]
    tnet.train()
    with torch.no_grad():
        tnet(nchw(x))
    for h in hooks:
        h.remove()
    return np.linalg.slogdet(k)[1], units[0], k


def weight_layers(tnet):
    return [m for m in tnet.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]


def reference_loss_grads(tnet, x, y):
    tnet.train()
    tnet.zero_grad()
    torch.nn.functional.cross_entropy(tnet(nchw(x))[1], torch.from_numpy(y).long()).backward()
    layers = weight_layers(tnet)
    gn = sum(float(m.weight.grad.norm()) for m in layers)
    sn = sum(float((m.weight.grad * m.weight).abs().sum().detach()) for m in layers)
    return gn, sn


def reference_synflow(tnet):
    """Abdelfattah et al.: |W| everywhere, BatchNorm removed, all-ones input, R = sum of outputs."""
    for parent in list(tnet.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, torch.nn.BatchNorm2d):
                setattr(parent, name, torch.nn.Identity())
    with torch.no_grad():
        for p in tnet.parameters():
            p.abs_()
    tnet.zero_grad()
    tnet.double()
    torch.sum(tnet(torch.ones(1, 3, H, H, dtype=torch.float64))[1]).backward()
    return np.log(sum(float((m.weight * m.weight.grad).sum()) for m in weight_layers(tnet)))


def reference_jacov(tnet, x):
    tnet.train()
    xt = nchw(x).requires_grad_(True)
    out = tnet(xt)[1]
    out.backward(torch.ones_like(out))
    j = xt.grad.reshape(B, -1).double().numpy()
    v = np.linalg.eigvalsh(np.corrcoef(j))
    return -np.sum(np.log(v + 1e-5) + 1.0 / (v + 1e-5))


@pytest.mark.parametrize("i", range(len(ARCHS)))
def test_naswot_and_das_match_relu_hooks(scorer, scores, batch, i):
    tnet = torch_twin(scorer, ARCHS[i])
    ref, units, k = reference_naswot(tnet, batch[0])
    assert scores["naswot"][i] == pytest.approx(ref, rel=1e-4, abs=1e-3)
    # DAS's atomic metrics: NASWOT = B log NAU + DA exactly; DAS reweights the NAU term
    assert scores["log_nau"][i] == pytest.approx(np.log(units), rel=1e-6)
    assert scores["da"][i] <= 1e-4  # Hadamard: log det of a PSD matrix with unit diagonal
    assert scores["naswot"][i] == pytest.approx(B * scores["log_nau"][i] + scores["da"][i], rel=1e-5)
    assert scores["das"][i] == pytest.approx(scores["da"][i] + 0.5 * B * scores["log_nau"][i], rel=1e-5)
    # the min_dist reading of DA: B log of the smallest normalised Hamming distance of two images
    dist = 1.0 - k / units
    assert scores["da_min"][i] == pytest.approx(B * np.log(dist[~np.eye(B, dtype=bool)].min()), rel=1e-5)


def test_das_with_the_min_dist_distinguishing_ability(scores, batch):
    got = ProxyScorer("das", C=C, N=N, seed=3, das_weight=1.33, das_da="min_dist")(ARCHS, *batch)
    np.testing.assert_allclose(got["das"], scores["da_min"] + 1.33 * B * scores["log_nau"], rtol=1e-5)
    with pytest.raises(ValueError, match="das_da"):
        ProxyScorer("das", C=C, N=N, das_da="median")(ARCHS[:1], *batch)


@pytest.fixture(scope="module")
def host_scorer():
    """host_gradients (the CPU default of `jaxnas score`): the gradient proxies through the eager
    kernels, one candidate at a time; NASWOT / DAS still traced."""
    host = ProxyScorer(ALL, C=C, N=N, seed=3, das_weight=0.5, host_gradients=True)
    assert host.host and len(host._eager_fns) == 3
    return host


@pytest.fixture(scope="module")
def host_scores(host_scorer, batch):
    return host_scorer(ARCHS, *batch)


@pytest.mark.parametrize("where", ["traced", "host"])
@pytest.mark.parametrize("i", range(len(ARCHS)))
def test_gradient_proxies_match_torch(scorer, scores, host_scores, batch, i, where):
    s = scores if where == "traced" else host_scores
    gn, sn = reference_loss_grads(torch_twin(scorer, ARCHS[i]), *batch)
    assert s["grad_norm"][i] == pytest.approx(gn, rel=1e-4)
    assert s["snip"][i] == pytest.approx(sn, rel=1e-4)
    assert s["synflow"][i] == pytest.approx(reference_synflow(torch_twin(scorer, ARCHS[i])), rel=1e-5)
    assert s["jacov"][i] == pytest.approx(reference_jacov(torch_twin(scorer, ARCHS[i]), batch[0]), rel=1e-3)
    if where == "host":
        assert set(s) == set(scores)
        for k in ("naswot", "das", "da", "log_nau"):
            assert s[k][i] == pytest.approx(scores[k][i], rel=1e-5)


def test_jacov_when_the_images_do_not_reach_the_logits(scorer, host_scorer, scores, batch):
    """Every cell's output node cut off from its input: the logits do not depend on the images, so
    their gradient is exactly zero, traced or through the eager kernels (which returned None there
    and crashed `jaxnas search --method jacov` on CPU until the method contract test found it).
    Scored beside two of ARCHS, so the module's scorers reuse their programs."""
    cut = nb201.from_string("|none~0|+|avg_pool_3x3~0|avg_pool_3x3~1|+|none~0|nor_conv_3x3~1|none~2|")
    want = -B * (np.log(1e-5) + 1e5)  # every eigenvalue of the (zero) Jacobian's kernel is 0
    for s in (scorer, host_scorer):
        got = s(np.stack([cut, ARCHS[0], ARCHS[1]]), *batch)["jacov"]
        np.testing.assert_allclose(got[0], want, rtol=1e-6)
        np.testing.assert_allclose(got[1:], scores["jacov"][:2], rtol=1e-3)


def test_scores_do_not_depend_on_the_other_candidates(scorer, scores, batch):
    """A candidate's weights come from its own NB201 index: in any company or order, same score."""
    order = [2, 0, 1]
    again = scorer(ARCHS[order], *batch)
    for k, v in again.items():
        np.testing.assert_allclose(v, scores[k][order], rtol=1e-5, atol=1e-5, err_msg=k)
    assert len({round(float(s), 3) for s in scores["naswot"]}) == 3  # distinct archs, distinct scores


def test_vmapped_chunks_equal_one_at_a_time(scores, batch):
    chunked = ProxyScorer("naswot", C=C, N=N, seed=3, chunk_size=3)(ARCHS, *batch)["naswot"]
    np.testing.assert_allclose(chunked, scores["naswot"], rtol=1e-5)


def test_fast_training_equals_explicit_sgd_steps(batch, scores):
    """Traced (in the program) and host (eager) fast training both equal explicit SGD steps."""
    rng = np.random.default_rng(1)
    tx = rng.normal(size=(2, 4, H, H, 3)).astype(np.float32)
    ty = rng.integers(0, 10, (2, 4)).astype(np.int32)
    fast = ProxyScorer("naswot", C=C, N=N, seed=3, fast_train_steps=3, fast_train_lr=0.2)
    got = fast(ARCHS[:1], *batch, tx, ty)["naswot"][0]
    # by hand: three single-path SGD steps (batches cycle), then the activation score
    from jaxnas.spaces.nb201.networks import used_params
    from jaxnas.train import optim
    params = candidate_params(fast, ARCHS[0])
    sgd = optim.sgd(0.2, 0.9, True, 5e-4)  # DAS fast training: Nesterov SGD, no clipping
    st = state_lib.create(params, fast.stats, 0, sgd.init(params))
    arch = jnp.asarray(ARCHS[0])
    one_step = jax.jit(lambda st, x,
                       y: steps.weight_step(sgd, 0.0, fast.graphdef, st, x, y, 0.2, Choice(arch),
                                                          used=used_params(st.params, arch))[0])
    for t in range(3):
        st = one_step(st, tx[t % 2], ty[t % 2])
    score = jax.jit(lambda p, s, x: activation_scores(fast.graphdef, p, s, arch, x, None)["naswot"])
    want = score(st.params, st.stats, jnp.asarray(batch[0]))
    assert got == pytest.approx(float(want), rel=1e-4)
    # and the trained network's codes are those of PyTorch's network with the trained weights
    ref, _, _ = reference_naswot(torch_twin(fast, ARCHS[0], st.params, st.stats), batch[0])
    assert got == pytest.approx(ref, rel=1e-3)
    untrained = scores["naswot"][0]  # the same seed's weights, untrained (the module's scorer)
    assert abs(got - untrained) > 1e-3
    # host_gradients (the CPU default): the same steps through the eager kernels, on the host
    host = ProxyScorer("naswot", C=C, N=N, seed=3, fast_train_steps=3, fast_train_lr=0.2, host_gradients=True)
    hp, hs = host.candidate_weights(ARCHS[0], tx, ty)
    used = jax.tree.leaves(used_params(st.params, arch)) + [True] * len(jax.tree.leaves(st.stats))
    for w, g, u in zip(jax.tree.leaves((st.params, st.stats)), jax.tree.leaves((hp, hs)), used):
        if u:  # the leaves arch does not use are zeros in the scorer's draw, never read
            np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-4, atol=1e-5)
    assert host(ARCHS[:1], *batch, tx, ty)["naswot"][0] == pytest.approx(float(want), rel=1e-4)


def test_host_fast_training_keeps_the_shared_weights(batch):
    """With shared weights the eager update (which donates its state) trains a copy."""
    rng = np.random.default_rng(1)
    tx, ty = rng.normal(size=(1, 4, H, H, 3)).astype(np.float32), rng.integers(0, 10, (1, 4)).astype(np.int32)
    shared = ProxyScorer("naswot", C=C, N=N, seed=3, fast_train_steps=2, init="shared", host_gradients=True)
    before = jax.tree.map(np.array, shared.params)
    params, _ = shared.candidate_weights(ARCHS[0], tx, ty)
    jax.tree.map(np.testing.assert_array_equal, jax.tree.map(np.array, shared.params), before)
    assert any(np.abs(np.asarray(p) - b).max() > 1e-4 for p,
               b in zip(jax.tree.leaves(params), jax.tree.leaves(before)))


def test_per_architecture_init_draws_exactly_the_whole_draws_values(scorer):
    """init_params(key, arch) (only the leaves the arch uses, drawn by counter) equals the whole
    network's draw on those leaves, bit for bit, and is zero elsewhere; also under jit."""
    from jaxnas.nn.init import uniform_slice as _uniform_slice
    from jaxnas.spaces.nb201.networks import used_params
    key = jax.random.fold_in(jax.random.key(5), 1234)
    whole = np.asarray(jax.random.uniform(key, (5000,), jnp.float32, -1.0, 1.0))
    for start, size in ((0, 1), (17, 333), (4321, 679)):
        np.testing.assert_array_equal(np.asarray(_uniform_slice(key, start, size)), whole[start:start + size])
    full = scorer.init_params(key)
    by_arch = jax.jit(scorer.init_params)
    for arch in ARCHS:
        got = by_arch(key, jnp.asarray(arch))
        used = jax.tree.leaves(used_params(scorer.params, jnp.asarray(arch)))
        n_zero = 0
        for (path, g), f, u in zip(jax.tree_util.tree_flatten_with_path(got)[0], jax.tree.leaves(full), used):
            if bool(u) or getattr(path[-1], "key", None) != "kernel":  # used, or a BN constant
                np.testing.assert_array_equal(np.asarray(g), np.asarray(f))
            else:
                assert not np.asarray(g).any()
                n_zero += 1
        n_conv = int(np.isin(arch, (nb201.CONV1, nb201.CONV3)).sum())
        assert n_zero == 3 * N * (2 * nb201.NUM_EDGES - n_conv)  # the unused conv kernels of every cell


def test_synflow_computes_past_float32s_range(scorer, batch):
    """Kernels 1e5x larger take the score past float32's e^88.7, as C=16, N=5 networks do on NB201;
    in float64 (traced and eager alike) it still equals the double-precision reference."""
    from jaxnas.proxies import gradient
    arch = ARCHS[0]
    big = jax.tree_util.tree_map_with_path(
        lambda path, x: x * 1e5 if getattr(path[-1], "key", None) == "kernel" else x,
        candidate_params(scorer, arch))
    ref = reference_synflow(torch_twin(scorer, arch, big))
    assert ref > 100
    with jax.enable_x64(True):
        traced = jax.jit(lambda p, a: gradient.synflow(scorer.graphdef, p, scorer.stats, a, batch[0], None))(
            big, jnp.asarray(arch))
        host = gradient.eager_synflow(scorer.graphdef, big, scorer.stats, arch, batch[0], None,
                                      space=scorer.space)
    assert float(traced["synflow"]) == pytest.approx(ref, rel=1e-6)
    assert float(host["synflow"]) == pytest.approx(ref, rel=1e-6)
    with pytest.raises(RuntimeError, match="enable_x64"):
        gradient.synflow(scorer.graphdef, big, scorer.stats, jnp.asarray(arch), batch[0], None)


def test_synflow_identity_bn_trick_is_exact():
    """Eval-mode BN with mean 0, var 1 - eps is the identity (synflow removes BatchNorm)."""
    x = jnp.linspace(-3, 3, 24).reshape(1, 2, 3, 4)
    from jaxnas.nn.ops import batch_norm
    y, _ = batch_norm(x, None, None, jnp.zeros(4), jnp.full(4, 1 - BN_EPS), train=False, track=True)
    np.testing.assert_array_equal(np.asarray(y), np.asarray(x))


@pytest.mark.parametrize("b, d", [(12, 1), (12, 45), (12, 4096), (1, 33), (2, 70), (7, 100), (13, 64)])
def test_agreement_matrix_both_methods_count_exactly(b, d):
    """The CPU popcount (which counts each pair once, by offset) and the accelerator matmul give the
    same exact counts as a direct loop, for odd and even batches."""
    from jaxnas.proxies.activation import agreement_matrix
    bits = np.random.default_rng(d).random((b, d)) < 0.3
    direct = np.array([[np.sum(bits[i] == bits[j]) for j in range(b)] for i in range(b)], np.float32)
    for method in ("popcount", "matmul"):
        np.testing.assert_array_equal(np.asarray(agreement_matrix(jnp.asarray(bits), method)), direct)
    with pytest.raises(ValueError, match="popcount or matmul"):
        agreement_matrix(jnp.asarray(bits), "float")


def test_select_archs(tmp_path):
    assert select_archs("all", 0).shape == (15625, 6)
    a, b = select_archs("50", 1), select_archs("50", 1)
    np.testing.assert_array_equal(a, b)
    assert len({nb201.to_string(x) for x in a}) == 50
    f = tmp_path / "archs.txt"
    f.write_text(nb201.to_string(ARCHS[0]) + "\n# comment\n\n" + nb201.to_string(ARCHS[1]) + "\n")
    np.testing.assert_array_equal(select_archs(str(f), 0), ARCHS[:2])
    f.write_text(nb201.to_string(ARCHS[0]) + "\n|nor_conv_9x9~0|+|\n")
    with pytest.raises(ValueError, match=r"archs.txt:2"):
        select_archs(str(f), 0)
    with pytest.raises(ValueError, match="must be in"):
        select_archs("0", 0)


# ------------------------------------------------------------------------------------------- CLI
@pytest.fixture
def _cli(capsys):
    """`jaxnas ...` in process (returncode, stdout, stderr): the runs share compiled programs."""
    from types import SimpleNamespace

    def run(*args):
        rc, out, err = main_in_process(args, capsys)
        return SimpleNamespace(returncode=rc, stdout=out, stderr=err)
    return run


SMALL = ["nb201.C=2", "nb201.N=1", "proxy.batch_size=16", "eval.chunk_size=4"]


def test_cli_score_resumes_and_summarises(image_folder, nb201_table_path, tmp_path, _cli):
    out = tmp_path / "score"
    args = ["score", "--proxy", "naswot,das", "--archs", "10", "--data", image_folder, "--out", out,
            "--bench-table", nb201_table_path, "--no-progress", *SMALL]
    r = _cli(*args)
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(open(out / "scores.csv")))
    assert len(rows) == 10 and list(rows[0]) == ["index", "arch", "naswot", "das", "da", "da_min", "log_nau"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n"] == 10 and set(summary["bench"]["correlation"]) == {"naswot", "das", "da", "da_min",
                                                                           "log_nau"}
    assert -1 <= summary["bench"]["correlation"]["naswot"]["kendall_tau"] <= 1
    # a finished run is not overwritten; a killed one (fewer rows, no summary) resumes to the same rows
    assert _cli(*args).returncode == 2
    lines = (out / "scores.csv").read_text().splitlines(keepends=True)
    (out / "scores.csv").write_text("".join(lines[:4]))
    (out / "summary.json").unlink()
    r = _cli(*args)
    assert r.returncode == 0, r.stderr
    assert list(csv.DictReader(open(out / "scores.csv"))) == rows
    # rows written with other columns (an older version) are not extended with misaligned ones
    old = [",".join(x.rstrip("\n").split(",")[:5] + x.rstrip("\n").split(",")[6:]) + "\n" for x in lines[:4]]
    (out / "scores.csv").write_text("".join(old))
    (out / "summary.json").unlink()
    r = _cli(*args)
    assert r.returncode == 2 and "use --overwrite" in r.stderr, r.stderr


def test_cli_score_with_host_fast_training(image_folder, tmp_path, _cli):
    """On CPU `fast_train_steps` runs on the host (eager steps), written in unpadded blocks of
    HOST_BLOCK candidates; a killed run resumes to the same rows."""
    from jaxnas.config import PRESETS, apply_overrides
    from jaxnas.proxies.run import HOST_BLOCK, make_scorer
    fast = [*SMALL, "proxy.fast_train_steps=1", "proxy.fast_train_batch_size=8"]
    assert make_scorer(apply_overrides(PRESETS["paper"], fast), ["naswot"], 10).host
    assert make_scorer(apply_overrides(PRESETS["paper"], SMALL), ["synflow"], 10).host  # gradient proxies too
    # forward only: traced
    assert not make_scorer(apply_overrides(PRESETS["paper"], SMALL), ["naswot"], 10).host
    out, n = tmp_path / "fast", HOST_BLOCK + 2
    args = ["score", "--proxy", "naswot", "--archs", str(n), "--data", image_folder, "--out", out,
            "--no-progress", *fast]
    r = _cli(*args)
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(open(out / "scores.csv")))
    assert len(rows) == n and len({r["arch"] for r in rows}) == n
    lines = (out / "scores.csv").read_text().splitlines(keepends=True)
    (out / "scores.csv").write_text("".join(lines[:4]))
    (out / "summary.json").unlink()
    assert _cli(*args).returncode == 0
    assert list(csv.DictReader(open(out / "scores.csv"))) == rows


def test_cli_naswot_search_and_errors(image_folder, nb201_table_path, tmp_path, _cli):
    out = tmp_path / "search"
    r = _cli("search", "--method", "naswot", "--data", image_folder, "--out", out, "--bench-table",
             nb201_table_path, "eval.select_num=6", *SMALL)
    assert r.returncode == 0, r.stderr
    res = json.loads((out / "result.json").read_text())
    best = max(res["candidates"], key=lambda c: c["score"])
    assert res["arch"] == best["arch"] and res["method"] == "naswot" and "bench" in res
    assert res["index"] == int(nb201.to_index(nb201.from_string(res["arch"])))
    bad = tmp_path / "bad.txt"
    bad.write_text("|nor_conv_3x3~0|+|\n")
    for args in (["score", "--proxy", "nope", "--data", image_folder, "--out", tmp_path / "x"],
                 ["score", "--archs", bad, "--data", image_folder, "--out", tmp_path / "y", *SMALL]):
        r = _cli(*args)
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
