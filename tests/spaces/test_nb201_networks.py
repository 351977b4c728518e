"""jaxnas.nn: NB201 parameter counts, equivalence with the PyTorch reference (xautodl), the supernet's
modes and single-path implementations, weight extraction, BN statistics, one compile for all archs.

Speed notes (XLA:CPU compiles are the cost here): modules are built abstractly with nnx.eval_shape and
filled from numpy (no per-shape PRNG compiles), forwards run eagerly so every test reuses the same
per-primitive compiles (one channel width C=8 and 8x8 inputs throughout); only the one-compile test and
the lax.switch path (which re-compiles on every eager call) are jitted.
"""
import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
from flax import nnx
from helpers import ZERO_FED, build, module_pairs
from xautodl.models.cell_infers.tiny_network import TinyNetwork
from xautodl.models.cell_searchs.genotypes import Structure
from xautodl.models.cell_searchs.search_model_setn import TinyNetworkSETN

from jaxnas.nn import apply, count_params, ops, split
from jaxnas.spaces import nb201
from jaxnas.spaces.arch import Choice, Gates, Weights
from jaxnas.spaces.nb201 import eager
from jaxnas.spaces.nb201.networks import InferCell, NB201Network, NB201SuperNet, SearchCell, extract

C, H, B = 8, 8, 4  # channel width, image size, batch of the small tests
ALL_CONV3 = [nb201.CONV3] * 6
WITH_NONE = nb201.from_string("|nor_conv_1x1~0|+|none~0|nor_conv_3x3~1|+"
                              "|avg_pool_3x3~0|none~1|skip_connect~2|")
MIXED = np.array([nb201.CONV3, nb201.CONV1, nb201.SKIP, nb201.POOL, nb201.NONE, nb201.CONV3], np.int32)
TORCH_TOL = {"rtol": 1e-4, "atol": 1e-4}
pytestmark = pytest.mark.usefixtures("torch_one_thread")


# ----------------------------------------------------------------------------------------------- helpers
def images(seed=0, n=B, h=H):
    return np.random.default_rng(seed).normal(size=(n, h, h, 3)).astype(np.float32)


def to_torch(x):
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def randomize_torch_bn(model, seed):
    """Random affine parameters and running statistics for every BatchNorm of a PyTorch model."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                n = m.num_features
                if m.affine:
                    m.weight.copy_(0.5 + torch.rand(n, generator=g))
                    m.bias.copy_(0.2 * torch.randn(n, generator=g))
                if m.track_running_stats:
                    m.running_mean.copy_(0.2 * torch.randn(n, generator=g))
                    m.running_var.copy_(0.5 + torch.rand(n, generator=g))


def t2n(t):
    # a copy: on CPU, jnp.asarray may alias the numpy buffer, which PyTorch then updates in place
    return np.array(t.detach().numpy(), copy=True)


def copy_torch_weights(tnet, net):
    """Copy every PyTorch weight into `net`; returns the number of parameters and statistics copied."""
    n_params = n_stats = 0

    def put(var, value):
        assert var[...].shape == value.shape, (var[...].shape, value.shape)
        var[...] = jnp.asarray(value, jnp.float32)
        return value.size

    for kind, t, o in module_pairs(tnet, net):
        if kind == "conv":
            if t.bias is not None:  # xautodl's search-cell convs carry a bias (affine=False); ours do not
                with torch.no_grad():
                    t.bias.zero_()
            n_params += put(o.kernel, t2n(t.weight).transpose(2, 3, 1, 0))  # OIHW -> HWIO
        elif kind == "bn":
            assert (o.affine, o.track) == (t.affine, t.track_running_stats)
            if t.affine:
                n_params += put(o.scale, t2n(t.weight)) + put(o.bias, t2n(t.bias))
            if t.track_running_stats:
                n_stats += put(o.mean, t2n(t.running_mean)) + put(o.var, t2n(t.running_var))
        else:
            n_params += put(o.kernel, t2n(t.weight).T) + put(o.bias, t2n(t.bias))
    return n_params, n_stats


def assert_stats_match(tnet, net):
    n = 0
    for kind, t, o in module_pairs(tnet, net):
        if kind == "bn" and t.track_running_stats:
            np.testing.assert_allclose(np.asarray(o.mean[...]), t2n(t.running_mean), rtol=1e-4, atol=1e-5)
            np.testing.assert_allclose(np.asarray(o.var[...]), t2n(t.running_var), rtol=1e-4, atol=1e-5)
            n += 1
    assert n > 0


def assert_trees_close_scaled(a, b, tol):
    """Leafwise max |a - b| <= tol * max(1, max |b|): float32 rounding grows with a leaf's magnitude
    (the cell's parameter gradients reach ~50)."""
    chex.assert_trees_all_equal_structs(a, b)
    for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(a), jax.tree.leaves(b)):
        x, y = np.asarray(x), np.asarray(y)
        assert x.shape == y.shape, path
        scale = max(1.0, float(np.abs(y).max()))
        assert np.abs(x - y).max() <= tol * scale, (jax.tree_util.keystr(path), np.abs(x - y).max(), scale)


# ---------------------------------------------------------------------------------- parameter counts
class _NoRngs:
    """Stands in for nnx.Rngs when only parameter shapes are wanted."""

    def params(self):
        return None


@pytest.fixture
def shape_only_init(monkeypatch):
    """Conv/Linear parameters become ShapeDtypeStructs: modules build in pure Python, shapes unchanged."""
    monkeypatch.setattr(ops, "uniform", lambda key, shape, fan_in: jax.ShapeDtypeStruct(shape, jnp.float32))


def _n_params(module):
    return int(sum(x.size for x in jax.tree.leaves(nnx.state(module, nnx.Param))))


def _nb201_params(archs):
    """NB201's parameter count for 10 classes: 0.073306 + 0.24304 n3 + 0.028 n1 million, in integers."""
    counts = nb201.count_ops(archs)
    return 73306 + 243040 * counts[..., nb201.CONV3] + 28000 * counts[..., nb201.CONV1]


def test_param_count_real_network():
    """Unpatched modules (abstract init) have NB201's count; count_params on split params agrees."""
    for arch in (ALL_CONV3, nb201.from_index(0)):
        net = nnx.eval_shape(lambda arch=arch: NB201Network(arch, rngs=nnx.Rngs(0)))
        _, params, stats = split(net)
        assert count_params(params) == _nb201_params(np.asarray(arch)) == _n_params(net)
        # statistics are not parameters: a mean and a variance per channel of every (affine) BN
        scales = [x.size for path, x in jax.tree_util.tree_leaves_with_path(params)
                  if any(getattr(k, "key", None) == "scale" for k in path)]
        assert len(scales) > 0 and sum(x.size for x in jax.tree.leaves(stats)) == 2 * sum(scales)
    assert _nb201_params(np.array(ALL_CONV3)) == 1531546


def test_param_count_all_architectures(shape_only_init):
    """All 15,625 architectures: the standalone network's parameter count equals NB201's.

    A network's count depends on the architecture only through its cells, and a cell's only through
    which edges carry nor_conv_1x1 / nor_conv_3x3. Building 15,625 (or even 3 x 729 cell-pattern)
    NNX networks costs minutes, so the counts are memoised per (width, edge, conv op) from real
    InferCells, the decomposition network = macro + N * sum over widths of sum over edges is checked
    against fully built networks and cells, and then applied to all 15,625 architectures.
    """
    Cd, N, rngs = 16, 5, _NoRngs()
    widths = (Cd, 2 * Cd, 4 * Cd)
    # per-(width, edge, op) parameters of a cell whose only conv is that edge
    table = np.zeros((3, nb201.NUM_EDGES, nb201.NUM_OPS), np.int64)
    for w, c in enumerate(widths):
        assert _n_params(InferCell([nb201.NONE, nb201.SKIP, nb201.POOL] * 2, c, rngs=rngs)) == 0
        for e in range(nb201.NUM_EDGES):
            for op in (nb201.CONV1, nb201.CONV3):
                arch = [nb201.SKIP] * 6
                arch[e] = op
                table[w, e, op] = _n_params(InferCell(arch, c, rngs=rngs))
                assert table[w, e, op] > 0

    def cell_count(archs, w):
        return table[w, np.arange(nb201.NUM_EDGES), archs].sum(-1)

    # the per-edge decomposition holds for real cells (random and extreme conv patterns, every width)
    rng = np.random.default_rng(0)
    patterns = [[nb201.CONV1] * 6, ALL_CONV3] + [rng.integers(0, 5, 6) for _ in range(40)]
    for w, c in enumerate(widths):
        for p in patterns:
            assert _n_params(InferCell(p, c, rngs=rngs)) == cell_count(np.asarray(p), w), (c, p)

    # the network decomposition holds for fully built networks
    macro = _n_params(NB201Network([nb201.NONE] * 6, Cd, N, rngs=rngs))
    assert macro == 73306

    def net_count(archs):
        return macro + N * sum(cell_count(archs, w) for w in range(3))

    for arch in [ALL_CONV3, [nb201.CONV1] * 6, WITH_NONE, MIXED, nb201.from_index(0), nb201.from_index(1835)]:
        arch = np.asarray(arch)
        assert _n_params(NB201Network(arch, Cd, N, rngs=rngs)) == net_count(arch), arch

    archs = nb201.enumerate_all()
    counts = net_count(archs)
    np.testing.assert_array_equal(counts, _nb201_params(archs))
    assert counts.min() == 73306 and counts.max() == 1531546
    assert len(np.unique(counts)) == 28  # (n1, n3) with n1 + n3 <= 6


# ------------------------------------------------------------------------- PyTorch reference: TinyNetwork
def _tiny_equivalence(arch, c, n, h, seed):
    torch.manual_seed(seed)
    tnet = TinyNetwork(c, n, Structure.str2structure(nb201.to_string(arch)), 10)
    randomize_torch_bn(tnet, seed)
    net = build(lambda: NB201Network(arch, c, n, rngs=nnx.Rngs(0)), seed=seed + 1)
    n_params, n_stats = copy_torch_weights(tnet, net)
    _, params, stats = split(net)
    # every parameter and statistic was overwritten from PyTorch, and the counts agree with PyTorch's
    assert n_params == count_params(params) == sum(p.numel() for p in tnet.parameters())
    assert n_stats == sum(x.size for x in jax.tree.leaves(stats))

    x = images(seed, h=h)
    tnet.eval()
    with torch.no_grad():
        t_eval = t2n(tnet(to_torch(x))[1])
    y_eval = np.asarray(net(jnp.asarray(x), train=False))
    np.testing.assert_allclose(y_eval, t_eval, **TORCH_TOL)

    tnet.train()
    with torch.no_grad():
        t_train = t2n(tnet(to_torch(x))[1])
    y_train = np.asarray(net(jnp.asarray(x), train=True))
    np.testing.assert_allclose(y_train, t_train, **TORCH_TOL)
    assert np.abs(t_train - t_eval).max() > 1e-2  # random running statistics: eval differs from train
    assert_stats_match(tnet, net)  # PyTorch updated its running stats (unbiased variance); so did we


@pytest.mark.parametrize("arch", [ALL_CONV3, nb201.from_index(0), nb201.from_index(1835), WITH_NONE],
                         ids=["all_conv3", "index0", "all_skip_1835", "with_none"])
def test_tiny_network_matches_xautodl(arch):
    _tiny_equivalence(np.asarray(arch), C, 2, H, seed=int(nb201.encode(arch)) % 1000)


def test_tiny_network_matches_xautodl_default_size():
    _tiny_equivalence(MIXED, 16, 5, H, seed=7)  # NB201's C=16, N=5 (on 8x8 images, for speed)


# ----------------------------------------------------------------- PyTorch reference: SETN supernet
@pytest.fixture(scope="module")
def setn_pair():
    """xautodl's TinyNetworkSETN (affine=False, tracked stats) and our supernet with its weights."""
    torch.manual_seed(0)
    tnet = TinyNetworkSETN(C, 2, 4, 10, list(nb201.OPS), affine=False, track_running_stats=True)
    randomize_torch_bn(tnet, 0)
    with torch.no_grad():
        tnet.arch_parameters.copy_(torch.randn(6, 5, generator=torch.Generator().manual_seed(1)))
    net = build(lambda: NB201SuperNet(C, 2, 10, affine=False, track_running_stats=True, rngs=nnx.Rngs(0)))
    n_params, _ = copy_torch_weights(tnet, net)
    assert n_params == count_params(split(net)[1])
    return tnet.state_dict(), nnx.split(net)


def _fresh_setn(setn_pair):
    tstate, (graphdef, state) = setn_pair
    tnet = TinyNetworkSETN(C, 2, 4, 10, list(nb201.OPS), affine=False, track_running_stats=True)
    tnet.load_state_dict(tstate)
    return tnet.train(), nnx.merge(graphdef, state, copy=True)  # fixtures stay pristine


@pytest.mark.parametrize("arch", [MIXED, WITH_NONE], ids=["mixed", "with_none"])
@pytest.mark.parametrize("impl", ["merged", "mask"])  # switch == these: test_single_path_impls_agree
def test_supernet_single_matches_setn_dynamic(setn_pair, arch, impl):
    tnet, net = _fresh_setn(setn_pair)
    net.single_path_impl = impl
    tnet.set_cal_mode("dynamic", Structure.str2structure(nb201.to_string(arch)))
    x = images(3)
    with torch.no_grad():
        t_logits = t2n(tnet(to_torch(x))[1])
    y = np.asarray(net(jnp.asarray(x), Choice(jnp.asarray(arch)), train=True))
    np.testing.assert_allclose(y, t_logits, **TORCH_TOL)
    # PyTorch ran (and updated the BN of) only the chosen ops; ours must keep the same statistics
    assert_stats_match(tnet, net)


@pytest.mark.parametrize("arch", [MIXED, WITH_NONE], ids=["mixed", "with_none"])
def test_eager_single_path_matches_setn_and_traced_gradients(setn_pair, arch):
    """jaxnas.spaces.nb201.eager (host architecture, one kernel per module; the CPU weight step): logits and
    BN statistics equal xautodl's dynamic mode, loss and gradients equal the traced `merged` pass."""
    tnet, net = _fresh_setn(setn_pair)
    tnet.set_cal_mode("dynamic", Structure.str2structure(nb201.to_string(arch)))
    x, labels = images(3), jnp.asarray(np.arange(B) % 10)
    with torch.no_grad():
        t_logits = t2n(tnet(to_torch(x))[1])
    graphdef, params, stats = split(net)
    logits, new = eager.forward(graphdef, params, stats, jnp.asarray(x), Choice(arch))
    np.testing.assert_allclose(np.asarray(logits), t_logits, **TORCH_TOL)
    nnx.update(net, new)
    assert_stats_match(tnet, net)

    (l_e, (acc_e, st_e)), g_e = eager.value_and_grad(graphdef, params, stats, jnp.asarray(x), labels,
                                                     Choice(arch))
    assert float(acc_e) == float(np.mean(np.asarray(logits).argmax(-1) == np.asarray(labels)))
    (l_t, (_, st_t)), g_t = jax.jit(jax.value_and_grad(_loss_fn(graphdef, stats, jnp.asarray(x), labels,
                                                               jnp.asarray(arch)), has_aux=True))(params)
    np.testing.assert_allclose(l_e, l_t, rtol=1e-6)
    assert_trees_close_scaled(g_e, g_t, 1e-5)
    assert_trees_close_scaled(st_e, st_t, 1e-5)
    with pytest.raises(ValueError, match="concrete architecture"):
        jax.jit(lambda a: eager.forward(graphdef, params, stats, jnp.asarray(x),
                                        Choice(a)))(jnp.asarray(arch))
    with pytest.raises(ValueError, match="shape \\[6\\]"):
        eager.forward(graphdef, params, stats, jnp.asarray(x), Choice(np.stack([arch, arch])))


def test_supernet_weighted_matches_setn_joint(setn_pair):
    tnet, net = _fresh_setn(setn_pair)
    tnet.set_cal_mode("joint")
    x = images(4)
    with torch.no_grad():
        t_logits = t2n(tnet(to_torch(x))[1])
        weights = t2n(torch.softmax(tnet.arch_parameters, -1))
    assert weights.min() < 0.1 and weights.max() > 0.3  # far from uniform: the weights matter
    y = np.asarray(net(jnp.asarray(x), Weights(jnp.asarray(weights)), train=True))
    np.testing.assert_allclose(y, t_logits, **TORCH_TOL)
    assert_stats_match(tnet, net)


def test_eager_weighted_matches_setn_joint_and_traced_gradients(setn_pair):
    """Eager weighted mode (SETN's evaluator step on CPU): logits and BN statistics equal xautodl's
    joint mode; the loss and its gradient w.r.t. the op weights equal the traced pass."""
    tnet, net = _fresh_setn(setn_pair)
    tnet.set_cal_mode("joint")
    x, labels = jnp.asarray(images(4)), jnp.asarray(np.arange(B) % 10)
    with torch.no_grad():
        t_logits = t2n(tnet(to_torch(np.asarray(x)))[1])
        weights = jnp.asarray(t2n(torch.softmax(tnet.arch_parameters, -1)))
    graphdef, params, stats = split(net)
    logits, new = eager.forward(graphdef, params, stats, x, Weights(weights))
    np.testing.assert_allclose(np.asarray(logits), t_logits, **TORCH_TOL)
    nnx.update(net, new)
    assert_stats_match(tnet, net)

    def traced_loss(w):
        out, new = apply(graphdef, params, stats, x, Weights(w), train=True)
        return optax.softmax_cross_entropy_with_integer_labels(out, labels).mean(), new

    (l_e, (_, st_e)), g_e = eager.weights_value_and_grad(graphdef, params, stats, x, labels, Weights(weights))
    (l_t, st_t), g_t = jax.jit(jax.value_and_grad(traced_loss, has_aux=True))(weights)
    np.testing.assert_allclose(l_e, l_t, rtol=1e-6)
    g_e = g_e.value
    assert g_e.shape == (6, 5) and float(jnp.abs(g_t).max()) > 1e-4  # a real gradient to compare
    assert_trees_close_scaled(g_e, g_t, 1e-5)
    assert_trees_close_scaled(st_e, st_t, 1e-5)
    with pytest.raises(ValueError, match="shape \\[6, 5\\]"):
        eager.forward(graphdef, params, stats, x, Weights(weights[0]))


# ---------------------------------------------------------------------------- supernet internals
@pytest.fixture(scope="module")
def supernet_state():
    """A 1-cell-per-stage supernet with random weights and running statistics, as (graphdef, state)."""
    return nnx.split(build(lambda: NB201SuperNet(C, 1, 10, rngs=nnx.Rngs(0)), seed=11))


def _supernet(supernet_state, impl="merged"):
    net = nnx.merge(*supernet_state, copy=True)
    net.single_path_impl = impl
    return net


ARCHS = [MIXED, WITH_NONE, np.array(ALL_CONV3), np.array([nb201.CONV1] * 6), nb201.from_index(1835)]


@pytest.fixture
def fast_init(monkeypatch):
    """extract() builds a fresh network before copying weights into it; its initial values do not
    matter (zeros make any weight that extract forgets to copy show), so skip the PRNG compiles."""
    monkeypatch.setattr(ops, "uniform", lambda key, shape, fan_in: jnp.zeros(shape, jnp.float32))


@pytest.mark.parametrize("affine", [False, True])
def test_single_equals_extract(fast_init, affine):
    """extract(supernet, arch) is the supernet's single path: same logits in eval and train mode, and
    the same running-statistics update (stem, ResNet blocks, head, and each chosen conv's BN)."""
    sg, sp, ss = split(build(lambda: NB201SuperNet(C, 1, 10, affine=affine, rngs=nnx.Rngs(0)), seed=21))
    x = jnp.asarray(images(5))
    for arch in ARCHS if not affine else ARCHS[:3]:
        a = Choice(jnp.asarray(arch))
        net = extract(nnx.merge(sg, sp, ss, copy=True), arch)
        assert isinstance(net, NB201Network) and net.cells[0].arch == tuple(int(o) for o in arch)
        ng, nparams, nstats = split(net)
        y_eval, _ = apply(ng, nparams, nstats, x, train=False)
        np.testing.assert_allclose(np.asarray(y_eval), np.asarray(apply(sg, sp, ss, x, a, train=False)[0]),
                                   rtol=1e-5, atol=1e-5)
        y_net, new_net = apply(ng, nparams, nstats, x, train=True)
        y_sn, new_sn = apply(sg, sp, ss, x, a, train=True)
        np.testing.assert_allclose(np.asarray(y_net), np.asarray(y_sn), rtol=1e-5, atol=1e-5)
        assert np.abs(np.asarray(y_net) - np.asarray(y_eval)).max() > 1e-3
        close = {"rtol": 1e-5, "atol": 1e-6}
        for part in ("stem", "head"):
            chex.assert_trees_all_close(new_net[part], new_sn[part], **close)
        n_convs = 0
        for i, cell in new_net["cells"].items():
            if "convs" not in cell:
                chex.assert_trees_all_close(cell, new_sn["cells"][i], **close)  # ResNet block
                continue
            assert sorted(cell["convs"]) == sorted(str(e) for e, o in enumerate(arch)
                                                   if o in (nb201.CONV1, nb201.CONV3))
            for e, conv in cell["convs"].items():
                name = "conv3" if arch[int(e)] == nb201.CONV3 else "conv1"
                chex.assert_trees_all_close(conv, new_sn["cells"][i]["edges"][int(e)][name], **close)
                n_convs += 1
        assert n_convs == 3 * int(np.isin(arch, (nb201.CONV1, nb201.CONV3)).sum())


def _loss_fn(graphdef, stats, x, labels, arch):
    def loss(params):
        logits, new = apply(graphdef, params, stats, x, Choice(arch), train=True)
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean(), (logits, new)
    return loss


IMPLS = ("merged", "switch", "mask")


@pytest.fixture(scope="module")
def search_cell():
    return build(lambda: SearchCell(C, False, True, rngs=nnx.Rngs(0)), seed=31)


def _cell_input(seed):
    return jnp.asarray(np.random.default_rng(seed).normal(size=(B, H, H, C)), jnp.float32)


@pytest.fixture(scope="module")
def cell_steps(search_cell):
    """Per single_path_impl, on one search cell (the impls differ only inside the cell's edges): a
    train-mode loss with its parameter gradients and new statistics, and the eval-mode output.

    merged and mask run eagerly (sharing compiled primitives with the other tests); switch is jitted,
    since eagerly every lax.switch re-traces and re-compiles its branches.
    """
    graphdef, params, stats = split(search_cell)
    x, r = _cell_input(6), _cell_input(16)

    def make(impl):
        def step(params, stats, arch):
            def loss(p):
                y, new = apply(graphdef, p, stats, x, arch, "choice", True, impl)
                return (y * r).sum(), (y, new)
            (value, (y, new)), grads = jax.value_and_grad(loss, has_aux=True)(params)
            y_eval, same = apply(graphdef, params, stats, x, arch, "choice", False, impl)
            return {"loss": value, "loss_terms": jnp.abs(y * r).sum(), "y": y, "new": new, "grads": grads,
                    "eval": y_eval, "same": same}
        return jax.jit(step) if impl == "switch" else step

    return {impl: make(impl) for impl in IMPLS}, params, stats


CELL_ARCHS = [MIXED, WITH_NONE, np.array(ALL_CONV3), np.array([nb201.CONV1] * 6)]


def test_single_path_impls_agree(cell_steps):
    """merged / switch / mask: same outputs (train and eval), statistics and parameter gradients."""
    steps, params, stats = cell_steps
    for arch in CELL_ARCHS[:3]:
        res = {impl: step(params, stats, jnp.asarray(arch)) for impl, step in steps.items()}
        for impl in ("merged", "switch"):
            # The loss sums terms of both signs, so float32 summation order moves it by a fraction
            # of the terms' magnitude sum(|y r|), not of its (cancelled) value: for the third
            # architecture the loss is 0.30 and sum(|y r|) 2126, and |dloss| was 1.0e-5 on one CPU,
            # 2.4e-5 on another (a bound of 1e-5 * |loss| failed). Bound: float32's eps (~1.2e-7)
            # times sum(|y r|), the usual scale of a float32 sum's rounding error.
            got, want = np.float64(res[impl]["loss"]), np.float64(res["mask"]["loss"])
            assert abs(got - want) <= 1.2e-7 * float(res["mask"]["loss_terms"]), (impl, got, want)
            assert_trees_close_scaled({k: v for k, v in res[impl].items() if k != "loss"},
                                      {k: v for k, v in res["mask"].items() if k != "loss"}, 1e-5)
        ref = res["mask"]
        assert np.abs(np.asarray(ref["y"] - ref["eval"])).max() > 1e-3
        # gradients reach exactly the convolutions the architecture uses
        for e, op in enumerate(arch):
            for name, conv_op in (("conv1", nb201.CONV1), ("conv3", nb201.CONV3)):
                g = np.abs(np.asarray(ref["grads"]["edges"][e][name]["conv"]["kernel"])).max()
                assert (g > 0) == (op == conv_op), (arch, e, name, g)


@pytest.mark.parametrize("impl", IMPLS)
def test_single_updates_only_selected_stats(cell_steps, impl):
    steps, params, stats = cell_steps
    res = steps[impl](params, stats, jnp.asarray(MIXED))  # edges: conv3, conv1, skip, pool, none, conv3
    chex.assert_trees_all_equal(res["same"], stats)  # eval mode leaves every statistic alone
    n_checked = 0
    for e, op in enumerate(MIXED):
        for name, conv_op in (("conv1", nb201.CONV1), ("conv3", nb201.CONV3)):
            old_s, new_s = stats["edges"][e][name]["bn"], res["new"]["edges"][e][name]["bn"]
            for k in ("mean", "var"):
                if op == conv_op:  # that op's BN saw the batch: every channel moved
                    assert np.abs(np.asarray(new_s[k] - old_s[k])).min() > 0, (e, name, k)
                else:
                    np.testing.assert_array_equal(new_s[k], old_s[k], err_msg=f"edge {e} {name} {k}")
                n_checked += 1
    assert n_checked == 6 * 2 * 2


def test_single_updates_only_selected_stats_network(supernet_state):
    """The same through the whole supernet (every cell), plus stem, ResNet blocks and head."""
    graphdef, params, stats = split(_supernet(supernet_state))
    _, new = apply(graphdef, params, stats, jnp.asarray(images(10)), Choice(jnp.asarray(MIXED)), train=True)
    for part in ("stem", "head"):
        assert not np.allclose(new[part]["bn"]["mean"], stats[part]["bn"]["mean"])
    n_cells = 0
    for i, cell in stats["cells"].items():
        if "edges" not in cell:  # ResNet block: always runs
            assert not np.allclose(new["cells"][i]["conv_a"]["bn"]["var"], cell["conv_a"]["bn"]["var"])
            continue
        n_cells += 1
        for e, op in enumerate(MIXED):
            for name, conv_op in (("conv1", nb201.CONV1), ("conv3", nb201.CONV3)):
                changed = not np.array_equal(new["cells"][i]["edges"][e][name]["bn"]["mean"],
                                             cell["edges"][e][name]["bn"]["mean"])
                assert changed == (op == conv_op), (i, e, name)
    assert n_cells == 3


def test_one_compile_serves_all_architectures(supernet_state):
    graphdef, params, stats = split(_supernet(supernet_state))
    x, labels = jnp.asarray(images(12)), jnp.arange(B) % 10
    chex.clear_trace_counter()

    @jax.jit
    @chex.assert_max_traces(n=1)
    def step(params, stats, arch):
        (loss, (_, new)), grads = jax.value_and_grad(_loss_fn(graphdef, stats, x, labels, arch),
                                                     has_aux=True)(params)
        return loss, grads, new

    archs = [MIXED, WITH_NONE, np.array(ALL_CONV3)] + list(np.asarray(nb201.sample(jax.random.key(0), 9)))
    losses = []
    for arch in archs:  # chex.assert_max_traces(n=1) fails on any re-trace
        loss, grads, _ = step(params, stats, jnp.asarray(arch, jnp.int32))
        assert np.isfinite(float(loss))
        assert all(np.isfinite(np.asarray(g)).all() for g in jax.tree.leaves(grads))
        losses.append(float(loss))
        if len(losses) <= 3:  # connected architectures: the gradient reaches the stem
            assert np.abs(np.asarray(grads["stem"]["conv"]["kernel"])).max() > 0
    assert len(archs) >= 10 and len(set(np.round(losses, 6))) >= len(archs) - 1
    assert step._cache_size() == 1
    # the compiled step computes what the eager forward does, architecture by architecture
    for arch, loss in zip(archs[:2], losses):
        eager, _ = _loss_fn(graphdef, stats, x, labels, jnp.asarray(arch))(params)
        np.testing.assert_allclose(loss, float(eager), rtol=1e-5)


def test_weighted_and_multihot_onehot_equal_single(supernet_state):
    net = _supernet(supernet_state)
    x = jnp.asarray(images(7))
    for arch in ARCHS[:3]:
        mask = nb201.to_mask(arch)
        for train in (True, False):
            y = net(x, Choice(jnp.asarray(arch)), train=train)
            for kind in (Weights, Gates):
                np.testing.assert_allclose(np.asarray(net(x, kind(mask), train=train)), np.asarray(y),
                                           rtol=1e-5, atol=1e-5, err_msg=f"{kind.__name__} train={train}")
            nnx.update(net, supernet_state[1])  # undo the statistics update of the train-mode passes


# Edge 0 (node 1 <- 0) is varied; edges 2 (2<-1), 4 (3<-1) and 5 (3<-2) are linear ops, so the cell's
# output is affine in node 1 and a multi-hot edge 0 must give exactly the mean of the single-op cells.
_BASE = [nb201.NONE, nb201.CONV1, nb201.SKIP, nb201.CONV3, nb201.POOL, nb201.SKIP]


@pytest.mark.parametrize("ops_pair", [(nb201.CONV1, nb201.CONV3), (nb201.SKIP, nb201.POOL),
                                      (nb201.NONE, nb201.CONV3)])
def test_multihot_two_ops_is_mean(search_cell, ops_pair):
    x = _cell_input(8)
    a, b = ops_pair
    outs = []
    for op in ops_pair:
        arch = np.array([op] + _BASE[1:], np.int32)
        outs.append(search_cell(x, jnp.asarray(arch), "choice", True, "merged"))
    mask = np.asarray(nb201.to_mask(np.array([a] + _BASE[1:], np.int32))).copy()
    mask[0, b] = 1.0
    y = search_cell(x, jnp.asarray(mask), "gates", True, "merged")
    np.testing.assert_allclose(np.asarray(y), np.asarray((outs[0] + outs[1]) / 2), rtol=1e-5, atol=1e-5)
    assert np.abs(np.asarray(outs[0] - outs[1])).max() > 1e-2  # the two ops really differ
    # and a weighted edge (weights 1, 1) is their sum, not their mean
    yw = search_cell(x, jnp.asarray(mask), "weights", True, "merged")
    assert not np.allclose(np.asarray(yw), np.asarray(y), atol=1e-3)


def test_multihot_empty_edge_is_none(search_cell):
    x = _cell_input(9)
    arch = np.array([nb201.NONE] + _BASE[1:], np.int32)
    mask = np.asarray(nb201.to_mask(arch)).copy()
    mask[0] = 0.0
    np.testing.assert_allclose(np.asarray(search_cell(x, jnp.asarray(mask), "gates", True, "merged")),
                               np.asarray(search_cell(x, jnp.asarray(arch), "choice", True, "merged")),
                               rtol=1e-6, atol=1e-6)


# ----------------------------------------------------------------------------------------- bad input
def test_bad_input(supernet_state):
    net = _supernet(supernet_state)
    x = jnp.asarray(images(13))
    with pytest.raises(ValueError, match=r"Choice takes an architecture of shape \(6,\)"):
        net(x, Choice(nb201.to_mask(MIXED)))
    with pytest.raises(ValueError, match=r"Weights takes an architecture of shape \(6, 5\)"):
        net(x, Weights(jnp.asarray(MIXED)))
    with pytest.raises(ValueError, match=r"Gates takes an architecture of shape \(6, 5\)"):
        net(x, Gates(jnp.zeros((6, 4))))
    with pytest.raises(ValueError, match=r"shape \(6,\), got \(2, 6\)"):
        net(x, Choice(jnp.zeros((2, 6), jnp.int32)))
    with pytest.raises(TypeError, match="must be wrapped as Choice / Weights / Gates"):
        net(x, jnp.asarray(MIXED))
    with pytest.raises(ValueError, match="single_path_impl must be one of"):
        NB201SuperNet(C, 1, single_path_impl="fast", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"one architecture of shape \[6\]"):
        NB201Network(np.zeros((2, 6), np.int32), C, 1, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"op ids must be in \[0, 5\)"):
        NB201Network([0, 1, 2, 3, 4, 5], C, 1, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"op ids must be in \[0, 5\)"):
        extract(net, [0, 1, 2, 3, 4, 7])


# ---------------------------------------------------------------------------- pruning unused ops
def _reaches_output(arch, node):
    """Whether a path of non-`none` edges leads from `node` to the cell's output (path enumeration)."""
    last = nb201.NUM_NODES - 1
    if node == last:
        return True
    return any(arch[e] != nb201.NONE and _reaches_output(arch, to) for e, (to, src) in enumerate(nb201.EDGES)
               if src == node)


def _reached_from_input(arch, node):
    """Whether a path of non-`none` edges leads from the cell's input (node 0) to `node`."""
    return node == 0 or any(arch[e] != nb201.NONE and _reached_from_input(arch, src)
                            for e, (to, src) in enumerate(nb201.EDGES) if to == node)


@pytest.mark.parametrize("zero_inputs", [False, True])
def test_live_ops_prunes_exactly_the_unused_edges(zero_inputs):
    """live_ops over all 15,625 architectures against the definition by paths: an edge's output is
    used iff its target reaches the output node or (with taps) a conv edge reads the target; with
    zero_inputs, also pruned when no path from the cell's input reaches its source."""
    from jaxnas.spaces.nb201.networks import live_ops
    archs = nb201.from_index(np.arange(nb201.NUM_ARCHS))
    conv = np.isin(archs, (nb201.CONV1, nb201.CONV3))
    for tapped in (False, True):
        got = np.asarray(jax.jit(jax.vmap(lambda a,
                                          t=tapped: live_ops(a, t, zero_inputs)))(jnp.asarray(archs)))
        want = archs.copy()
        for n, arch in enumerate(archs):
            for e, (to, src) in enumerate(nb201.EDGES):
                read_by_conv = any(conv[n, f] for f, (_, s) in enumerate(nb201.EDGES) if s == to)
                if not (_reaches_output(arch, to) or (tapped and read_by_conv)):
                    want[n, e] = nb201.NONE
                if zero_inputs and not _reached_from_input(arch, src):
                    want[n, e] = nb201.NONE
        np.testing.assert_array_equal(got, want)
        pruned = (conv & (got == nb201.NONE)).sum() / conv.sum()
        low, high = (0.12, 0.18) if zero_inputs else (0.05, 0.1)
        assert low < pruned < high, pruned  # a real share of the convolutions is skipped


# node 2 unused (3<-2 none); node 1 read only by a conv into node 2: kept for its tap only
PRUNABLE = nb201.from_string("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_1x1~1|+"
                             "|skip_connect~0|none~1|none~2|")


def test_pruned_cell_equals_full_cell(search_cell):
    """prune=True gives the same cell output and the same tapped values (ReLU inputs, times their
    count) as running every op, with and without taps, in train and eval mode."""
    from jaxnas.spaces.nb201.networks import live_ops
    np.testing.assert_array_equal(np.asarray(live_ops(jnp.asarray(PRUNABLE), False)),
                                  [nb201.NONE] * 3 + [nb201.SKIP, nb201.NONE, nb201.NONE])
    np.testing.assert_array_equal(np.asarray(live_ops(jnp.asarray(PRUNABLE), True)),
                                  [nb201.CONV3, nb201.NONE, nb201.NONE, nb201.SKIP, nb201.NONE, nb201.NONE])
    graphdef, params, stats = split(search_cell)
    x = _cell_input(7)

    @functools.partial(jax.jit, static_argnums=(1, 2))
    def run(arch, prune, train):
        taps = []
        y, _ = apply(graphdef, params, stats, x, arch, "choice", train, "switch",
                     lambda v, count: taps.append(count * v), prune)
        return y, taps

    archs = [PRUNABLE, MIXED, WITH_NONE,
             ZERO_FED] + list(nb201.from_index(np.random.default_rng(0).choice(15625, 5)))
    for arch in archs:
        for train in (True, False):
            full = run(jnp.asarray(arch), False, train)
            # "zero" is exact with batch statistics and zero BN bias (this cell's BNs have no affine)
            for prune in (True, "zero") if train else (True,):
                assert_trees_close_scaled(run(jnp.asarray(arch), prune, train), full, 1e-6)
    assert np.asarray(live_ops(jnp.asarray(ZERO_FED), True, True))[2] == nb201.NONE
    with pytest.raises(ValueError, match="prune applies to a Choice only"):
        net = _supernet(nnx.split(build(lambda: NB201SuperNet(C, 1, 10, rngs=nnx.Rngs(0)), seed=11)))
        net(jnp.asarray(images(1)), Weights(jnp.ones((6, 5))), prune=True)
