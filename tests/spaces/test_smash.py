"""SMASH's memory-bank space: its geometry against the reference's numbers, the traceable sampler
against a direct loop over the reference's rules (by distributions: the numpy stream of
ajbrock/SMASH cannot be reproduced in JAX), string and reference-tuple round trips, bad input."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnas.spaces.smash.config import Smash
from jaxnas.spaces.smash.layout import BLOCKS, Layout
from jaxnas.spaces.smash.space import SmashSpace

SPACE = SmashSpace()
K = 1500


def test_layout_has_the_reference_sizes():
    """SMASH.py prints these at its command-line defaults (seed-methods.md SMASH-1)."""
    lay = SPACE.layout
    assert lay.in_channels == (64, 96, 112) and lay.widths == (192, 224, 256)
    assert lay.budget_channels == (832, 1632, 3184) and lay.budget_slices == (52, 102, 199)
    assert lay.columns == 353 and lay.max_banks == 32 and lay.groups == (1, 2, 4, 8) and lay.k == 8
    assert [lay.bank_sizes(b) for b in range(BLOCKS)] == [(1, 2, 3, 4, 6, 8), (1, 2, 3, 4, 5, 6, 8),
                                                          tuple(range(1, 9))]
    # the tiny preset: bank sizes whose input fills no bank are left out (the reference fails there)
    tiny = Layout.of(Smash(depth=4, width=1, N_max=32))
    assert tiny.in_channels == (16, 16, 16) and tiny.bank_sizes(0) == (1, 2)


def reference_sample(lay: Layout, rng, max_budget=1.0, max_kernel=7):
    """The rules of SMASH.py `sample_architecture`, as a plain loop: per block, per layer, the read
    count and banks, G, the write count and banks, kernels, dilations, groups (single-conv op)."""
    fractions = rng.uniform(0.3, max_budget, 3)
    out = []
    for b in range(BLOCKS):
        bs = int(rng.choice(lay.bank_sizes(b)))
        nin, dc, k = lay.input_banks(b, bs), lay.dc, lay.k
        budget = int(fractions[b] * lay.budget_channels[b] // (lay.N * dc))
        slots = min(int(nin + np.ceil(fractions[b] * lay.depth * k) // bs), lay.banks(b, bs))
        written = [1] * nin + [0] * (slots - nin)
        min_budget, min_reads = lay.min_budget(bs), lay.min_reads(bs)
        choices = list(range(min_reads, slots // min_reads * min_reads + 1, min_reads))
        used, layers = 0, []
        while budget - used >= min_budget and len(layers) < lay.max_layers:
            R = sum(w > 0 for w in written)
            max_in = max(c for c in choices if c <= (budget - used) * dc // bs)
            n_read = min(int(rng.choice([c for c in choices if c <= R])), max_in)
            read = sorted(rng.choice(R, n_read, replace=False))
            gs = list(range(bs, k + 1, bs))
            p = np.array([1 / (0.01 + 10 * abs(g - n_read * bs)) for g in gs])
            G = int(rng.choice(gs, p=p / p.sum()))
            used += n_read * bs // dc
            empty = [i for i, w in enumerate(written) if w == 0]
            a = G // bs
            counts = list(range(a, max(R // 2, a) + 1))
            q = np.exp(-np.arange(len(counts), dtype=float))
            pool = list(range(R)) + empty[:a]
            n_w = min(int(rng.choice(counts, p=q / q.sum())), len(pool))
            picked = sorted(rng.choice(pool, n_w, replace=False))
            n_new = sum(x in empty for x in picked)
            write = [x for x in picked if x not in empty] + empty[:n_new]
            for w in write:
                written[w] += 1
            kh, kw = (int(rng.choice(range(3, max_kernel + 2, 2))) for _ in range(2))
            dh, dw = (int(rng.integers(1, 5 - (s - 1) // 2)) for s in (kh, kw))
            layers.append(dict(read=read, write=write, G=G, k=(kh, kw), d=(dh, dw),
                               g=int(rng.choice(lay.groups))))
        out.append((bs, layers))
    return out


def summaries_reference(samples):
    rows = {f"layers{b}": [] for b in range(BLOCKS)}
    rows.update({f"bs{b}": [] for b in range(BLOCKS)})
    rows.update(G=[], reads=[], writes=[], kernel=[], dilation=[], groups=[])
    for arch in samples:
        for b, (bs, layers) in enumerate(arch):
            rows[f"layers{b}"].append(len(layers))
            rows[f"bs{b}"].append(bs)
            for layer in layers:
                rows["G"].append(layer["G"])
                rows["reads"].append(len(layer["read"]))
                rows["writes"].append(len(layer["write"]))
                rows["kernel"].extend(layer["k"])
                rows["dilation"].extend(layer["d"])
                rows["groups"].append(layer["g"])
    return rows


def summaries_jax(a):
    rows = {f"layers{b}": list(a["layers"][:, b]) for b in range(BLOCKS)}
    rows.update({f"bs{b}": list(a["bank_size"][:, b]) for b in range(BLOCKS)})
    live = a["G"] > 0
    rows.update(G=list(a["G"][live]), reads=list(a["read"].sum(-1)[live]),
                writes=list(a["write"].sum(-1)[live]), kernel=list(a["kernel"][..., 0, :][live].ravel()),
                dilation=list(a["dilation"][..., 0, :][live].ravel()), groups=list(a["groups"][..., 0][live]))
    return rows


def total_variation(x, y):
    values = sorted(set(x) | set(y))
    px = np.array([np.mean(np.asarray(x) == v) for v in values])
    py = np.array([np.mean(np.asarray(y) == v) for v in values])
    return 0.5 * np.abs(px - py).sum()


def test_sampler_follows_the_reference_rules_in_distribution():
    """K architectures from the traceable sampler and K from the direct loop, at the final state:
    every marginal within a total-variation distance of 0.04 for the per-layer draws (pooled over
    ~30,000 layers) and 0.1 for the per-architecture ones (layer counts, bank sizes); two reference
    samples differ by up to 0.023 and 0.072 (measured; also 10 % into training), a wrong rule by
    far more. Every sampled architecture validates."""
    got = jax.device_get(jax.jit(lambda key: SPACE.sample(key, K))(jax.random.key(0)))
    SPACE.validate(got)
    # the network runs only the slots a block can fill
    assert (got["layers"] <= [SPACE.layout.layer_slots(b) for b in range(BLOCKS)]).all()
    rng = np.random.default_rng(0)
    want = summaries_reference([reference_sample(SPACE.layout, rng) for _ in range(K)])
    have = summaries_jax(got)
    for name in want:
        per_arch = name.startswith(("layers", "bs"))
        tv = total_variation(have[name], want[name])
        assert tv < (0.1 if per_arch else 0.04), (name, tv)
        if name.startswith("layers"):
            assert np.mean(have[name]) == pytest.approx(np.mean(want[name]), rel=0.04), name


def test_an_early_state_bounds_the_budget_and_the_kernels():
    """10 % into training (budget fractions up to 0.6, kernels 3 only): every block spends at most
    0.6 of its full read budget, every kernel is 3x3, and blocks are smaller than at the end."""
    st = SPACE.annealed_state(0.1)
    assert float(st["max_budget"]) == pytest.approx(0.6) and int(st["max_kernel"]) == 3
    draw = jax.jit(lambda key, s: SPACE.sample(key, 300, s))
    early, final = (jax.device_get(draw(jax.random.key(1), s)) for s in (st, SPACE.init_state()))
    SPACE.validate(early)
    spent = (early["read"].sum(-1) * early["bank_size"][:, :, None] // SPACE.layout.dc).sum(-1)
    assert (spent <= np.floor(0.6 * np.array(SPACE.layout.budget_channels) / 16)).all()
    live = early["G"] > 0
    assert (early["kernel"][..., 0, :][live] == 3).all() and (final["kernel"][..., 0, :] == 7).any()
    assert early["layers"].mean() < 0.8 * final["layers"].mean()


def test_annealing_follows_update_lr():
    """max_budget = 0.5 + 0.5 f and max_kernel = 3 + int(2 * f * 2), f = min(progress / 0.5, 1):
    kernels {3} below 1/8 of training, {3, 5} below 3/8 (range(3, max_kernel + 2, 2))."""
    for progress, (budget, kernel) in [(0.0, (0.5, 3)), (0.12, (0.62, 3)), (0.13, (0.63, 4)),
                                       (0.3, (0.8, 5)), (0.38, (0.88, 6)), (0.5, (1.0, 7)), (0.9, (1.0, 7))]:
        st = SPACE.annealed_state(progress)
        assert float(st["max_budget"]) == pytest.approx(budget, abs=1e-6) and int(st["max_kernel"]) == kernel


def one(archs, i=0):
    return {k: v[i] for k, v in archs.items()}


@pytest.fixture(scope="module")
def archs():
    return SPACE.validate(jax.device_get(SPACE.sample(jax.random.key(5), 7)))


def test_reference_tuple_round_trip(archs):
    for i in range(7):
        arch = one(archs, i)
        ref = SPACE.to_reference(arch)
        assert len(ref) == 10 and ref[7] == [int(x) for x in arch["bank_size"]]
        b0 = ref[0][0]
        assert len(b0) == arch["layers"][0] and all(r == sorted(r) for r in b0)
        assert ref[3][0][0] == [1, 0, 0, 0] and len(ref[8][0][0]) == 4 and ref[9][0][0][1:] == [1, 1, 1]
        back = SPACE.from_reference(ref)
        assert all(np.array_equal(back[k], arch[k]) for k in arch)
    ref = SPACE.to_reference(one(archs))
    ref[1][0][0] = ref[1][0][0][::-1] + [99] if len(ref[1][0][0]) > 1 else [99]
    with pytest.raises(ValueError, match="block 0, layer 0"):
        SPACE.from_reference(ref)


@pytest.mark.parametrize("edit, match", [
    (lambda a: a["kernel"].__setitem__((0, 0, 0), (9, 3)), "kernel 9x3"),
    (lambda a: a["dilation"].__setitem__((0, 0, 0), (1, 4)), "dilation 1x4"),
    (lambda a: a["groups"].__setitem__((0, 0, 0), 3), "groups 3"),
    (lambda a: a["bank_size"].__setitem__(0, 7), "bank size 7"),
    (lambda a: a["G"].__setitem__((0, 0), 0), "G=0"),
    (lambda a: a["read"].__setitem__((0, 0), np.roll(a["read"][0, 0], 32 - a["read"][0, 0].sum())),
     "which no earlier layer"),
    (lambda a: a["layers"].__setitem__(0, 60), "60 layers"),
])
def test_bad_architectures_get_a_one_line_error(archs, edit, match):
    arch = {k: np.array(v) for k, v in one(archs).items()}
    edit(arch)
    with pytest.raises(ValueError, match=match) as err:
        SPACE.validate(arch)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("text, match", [
    ("smash-d12w4N8M64b4m2c2L48:bs1=", "3 '/'-separated blocks"),
    ("smash-d4w1N8M32b4m2c2L16:bs1=/bs1=/bs1=", "starts with"),
    ("smash-d12w4N8M64b4m2c2L48:bs2=r0w1G2o0k3x3d1x1g1/bs1=/bs1=x", "'bs<bank size>=<layers>'|not 'r"),
    ("smash-d12w4N8M64b4m2c2L48:bs2=r0w1G2o0k3x3d1x1/bs1=/bs1=", "not 'r<banks>"),
    ("smash-d12w4N8M64b4m2c2L48:bs2=r0w40G2o0k3x3d1x1g1/bs1=/bs1=", "bank 40 is beyond"),
    ("smash-d12w4N8M64b4m2c2L48:bs2=r0w1G2o2k3x3d1x1g1/bs1=/bs1=", "op 2 has 2 convs"),
    ("smash-d12w4N8M64b4m2c2L48:bs2=r9w1G2o0k3x3d1x1g1/bs1=/bs1=", "reads bank 9"),
])
def test_malformed_strings_get_a_one_line_error(text, match):
    with pytest.raises(ValueError, match=match) as err:
        SPACE.from_string(text)
    assert "\n" not in str(err.value)


def test_an_empty_block_and_a_hand_written_string_round_trip():
    text = ("smash-d12w4N8M64b4m2c2L48:bs1=r0+3w3+8G2o0k3x5d3x2g4;r1+2+5+8w9G4o0k7x7d1x1g1/bs2=/"
            "bs4=r0+1w2G4o4k3x3d1x1g1,k5x5d2x2g2,k3x3d1x1g8,k7x3d1x1g1")
    arch = SPACE.from_string(text)
    assert SPACE.to_string(arch) == text
    assert arch["layers"].tolist() == [2, 0, 1] and arch["write"][0, 0].nonzero()[0].tolist() == [3, 8]


@pytest.mark.parametrize("argv, says", [
    (["search", "--method", "rsps"], "builds none (`build_supernet`); its weights come from a HyperNet: "
                                     "--method smash"),
    (["search", "--method", "naswot"], "space 'smash' does not"),
    (["score"], "space 'smash' does not"),
    (["search", "--method", "smash", "--bench-table", "t.csv"], "(`bench_index`); space 'smash' has none"),
    (["train", "--arch", "smash-d4w1N8M32b4m2c2L16:bs1=r0+1w2G1o0k9x3d1x1g1/bs2=/bs2="],
     "--arch: block 0, layer 0: kernel 9x3 outside [3, 5, 7] (smash.max_kernel)"),
    (["train", "--arch", "smash-d4w1N8M32b4m2c2L16:bs1=r0+1w2+40G1o0k3x3d1x1g1/bs2=/bs2="],
     "--arch: block 0, layer 0: bank 40 is beyond the 8 banks of this space")])
def test_what_the_space_cannot_run_is_refused_up_front(argv, says, tmp_path, capsys):
    """What needs a network the space does not build, or shared weights it does not have, says so."""
    from helpers import main_in_process
    rc, _, err = main_in_process([*argv, "--space", "smash", "--preset", "tiny", "--out", tmp_path / "r"],
                                 capsys)
    assert rc == 2 and says in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "r").exists()


def reference_cost(lay: Layout, ref, num_classes, image_size=32):
    """The counts of ajbrock/SMASH utils.py count_params / count_flops, written as a plain loop over
    the reference tuple (num_classes in place of its hard-coded 100)."""
    incoming, outgoing, G, ops, _, _, _, bank_sizes, kernels, groups = ref
    params = flops = 0
    for b in range(BLOCKS):
        bs, hw = bank_sizes[b], image_size // 2 ** b
        for read, g, op, ks, grp in zip(incoming[b], G[b], ops[b], kernels[b], groups[b]):
            n_in, n_out = bs * len(read) * lay.N, g * lay.N
            n_b = min(min(max(n_in // n_out, 1), lay.bottleneck) * n_out, n_in,
                      lay.max_bottleneck * lay.N_max)
            params += n_in + n_in * n_b
            flops += hw * hw * n_in * n_b
            for j, on in enumerate(op):
                if on:
                    c_in = n_out if j % 2 else n_b
                    params += c_in + c_in * n_out * ks[j][0] * ks[j][1] // grp[j]
                    flops += hw * hw * c_in * n_out * ks[j][0] * ks[j][1] // grp[j]
        banks = max([max(w) + 1 for w in outgoing[b]] + [lay.input_banks(b, bs)])
        n_t = banks * bs * lay.N
        params += n_t + n_t * (lay.in_channels[b + 1] if b < 2 else num_classes)
    return params, flops


def test_cost_is_the_reference_count_traced_and_batched(archs):
    got = jax.device_get(jax.jit(lambda a: SPACE.cost(a, num_classes=100))(archs))
    assert got["params"].shape == (7,) and got["params"].dtype == np.int32
    for i in range(7):
        params, flops = reference_cost(SPACE.layout, SPACE.to_reference(one(archs, i)), 100)
        assert int(got["params"][i]) == params
        assert float(got["flops"][i]) == pytest.approx(flops, rel=1e-6)
    # an op with all four convs counts the second-stage convs with G N inputs
    arch = SPACE.from_string("smash-d12w4N8M64b4m2c2L48:bs1=r0+3w3+8G2o0k3x5d3x2g4/bs2=/"
                             "bs4=r0+1w2G4o4k3x3d1x1g1,k5x5d2x2g2,k3x3d1x1g8,k7x3d1x1g1")
    params, flops = reference_cost(SPACE.layout, SPACE.to_reference(arch), 10)
    got = SPACE.cost(arch)
    assert int(got["params"]) == params and float(got["flops"]) == pytest.approx(flops, rel=1e-6)


def direct_encoding(lay: Layout, ref, reference=False, max_kernel=7):
    """c of SMASH.py sample_weights written plainly from its definition, for the reference tuple:
    -1 everywhere; per layer and read bank, +1 on the layer's first G rows of the columns the bank
    covers at its read bank, its write banks, block, G, then (per active conv) dilation h / w,
    kernel h / w, (op), groups. Also returns the used columns + 1."""
    from jaxnas.spaces.smash import encoding
    incoming, outgoing, G, ops, _, dilation, _, bank_sizes, kernels, groups = ref
    c = -np.ones((encoding.channels(lay), lay.k, encoding.grid_columns(lay)), np.float32)
    multi = lay.ops != "single"
    width = (max_kernel if reference else lay.max_kernel) // 2
    column = 0
    for b in range(BLOCKS):
        bs = bank_sizes[b]
        for read, write, g, op, dil, ks, grp in zip(incoming[b], outgoing[b], G[b], ops[b], dilation[b],
                                                   kernels[b], groups[b]):
            convs = [j for j in range(4) if op[j]] if multi else [0]
            for i, r in enumerate(read):
                sub = i * bs
                cols = slice(column + sub // lay.dc, column + (sub + bs) // lay.dc + (sub + bs) % lay.dc)
                marks = [r] + [lay.max_banks + w for w in write] + [2 * lay.max_banks + b,
                                                                   2 * lay.max_banks + 3 + g - 1]
                at = 2 * lay.max_banks + 3 + lay.k
                n = 4 if multi else 1
                for j in range(n):
                    for axis in (0, 1):
                        if j in convs:
                            marks.append(at + dil[j][axis] - 1)
                        at += 3
                for j in range(n):
                    for axis in (0, 1):
                        if j in convs:
                            marks.append(at + ks[j][axis] // 2 - 1)
                        at += width
                at += 4 if lay.ops == "var" else 0
                for j in range(n):
                    if j in convs:
                        marks.append(at + lay.groups.index(grp[j]) - (1 if reference else 0))
                    at += len(lay.groups)
                for m in marks:
                    c[m, :g, cols] = 1
            column += bs * len(read) // lay.dc
    return c, column + 1


@pytest.mark.parametrize("mode", ["fixed", "reference", "reference-early", "var-ops"])
def test_encoding_equals_a_direct_construction(archs, mode):
    from jaxnas.spaces import has
    from jaxnas.spaces.smash import encoding
    space = {"fixed": SPACE, "var-ops": SmashSpace(Smash(ops="var"))}.get(
        mode, SmashSpace(Smash(encoding="reference")))  # the space's capability, by smash.encoding
    assert has(space, "encode")
    state = space.annealed_state(0.1) if mode == "reference-early" else None  # kernels 3 only
    batch = archs if mode in ("fixed", "reference") else space.validate(
        jax.device_get(space.sample(jax.random.key(6), 3, state)))
    reference, mk = mode.startswith("reference"), (3 if mode == "reference-early" else 7)
    got, masks = jax.device_get(jax.jit(jax.vmap(lambda a: (space.encode(a, {"max_kernel": jnp.int32(mk)}),
                                                            encoding.column_mask(space.layout, a))))(batch))
    for i in range(len(batch["layers"])):
        want, used = direct_encoding(space.layout, space.to_reference(one(batch, i)), reference, mk)
        np.testing.assert_array_equal(got[i], want)
        assert masks[i].sum() == used
    assert got.shape[1:] == (91 if mode != "var-ops" else 143, 8, 354)


def test_w1x1_is_the_references_view_and_index_select():
    """SMASH.py sample_weights: out [1, N N dc, k, S'] -> squeeze, transpose(0, 1) [k, N N dc, S'],
    view(N_max, S' dc N), index_select(1, [q + t S' for q in range(S') for t in range(dc N)]),
    transpose -> [S' dc N, N_max]; written here with numpy's own reshapes, element by element."""
    from jaxnas.spaces.smash.hypernet import to_w1x1
    N, dc, k, S = 8, 2, 8, 5
    out = np.random.default_rng(0).normal(size=(1, N * N * dc, k, S)).astype(np.float32)
    t = out[0].transpose(1, 0, 2).reshape(N * k, S * dc * N)  # torch .view of a contiguous copy
    index = [q + j * S for q in range(S) for j in range(dc * N)]
    want = t[:, index].T
    got = np.asarray(to_w1x1(jnp.asarray(out[0].transpose(1, 2, 0)), N, dc))  # ours reads [k, S, C]
    np.testing.assert_array_equal(got, want)
    # the notes' closed form: w1x1[s N dc + t, kk N + u] = out[u N dc + t, kk, s]
    assert got[3 * 16 + 5, 2 * 8 + 7] == out[0, 7 * 16 + 5, 2, 3]


def test_hypernet_equals_a_pytorch_twin_on_the_cut_grid():
    """The masked HyperNet at a fixed width equals PyTorch's dense net (weight-normalised convs,
    LeakyReLU 0.02, concatenating skips) run on the grid cut after the used columns, as the
    reference runs it; columns beyond are zero."""
    import torch
    from flax import nnx

    from jaxnas.spaces.smash.hypernet import LEAK, HyperNet
    c_in, c_out, k, S, used = 12, 16, 4, 9, 6
    net = HyperNet(c_in, c_out, growth=3, depths=(2, 2, 1), rngs=nnx.Rngs(0))
    x = np.random.default_rng(1).normal(size=(1, k, S, c_in)).astype(np.float32)
    cols = np.arange(S) < used
    got = np.asarray(net(jnp.asarray(x), jnp.asarray(cols[None])))
    assert not got[:, :, used:].any()

    def conv(t, kernel):  # kernel HWIO -> OIHW, normalised by its Frobenius norm
        w = torch.from_numpy(np.asarray(kernel).transpose(3, 2, 0, 1).copy())
        w = w / w.norm()
        return torch.nn.functional.conv2d(t, w, padding=(w.shape[-1] - 1) // 2)

    t = torch.from_numpy(x[:, :, :used].transpose(0, 3, 1, 2).copy())
    for i, (layer, dense) in enumerate(zip(net.convs, net.dense)):
        y = conv(t if i == 0 else torch.nn.functional.leaky_relu(t, LEAK), layer.kernel[...])
        t = torch.cat([t, y], 1) if dense else y
    want = conv(torch.nn.functional.leaky_relu(t, LEAK), net.head.kernel[...]).numpy().transpose(0, 2, 3, 1)
    np.testing.assert_allclose(got[:, :, :used], want, rtol=1e-4, atol=1e-5)


def test_hypernet_has_the_references_size():
    """At the defaults [z, c] has 1 + 91 channels and the output N N dc = 128: 26 convs and 582,541
    weights (counted from SMASH.py's hyperconv)."""
    from flax import nnx

    from jaxnas.spaces.smash import encoding
    from jaxnas.spaces.smash.hypernet import HyperNet
    lay = SPACE.layout
    c_in, c_out = 1 + encoding.channels(lay), lay.N * lay.N * lay.dc
    net = nnx.eval_shape(lambda: HyperNet(c_in, c_out, rngs=nnx.Rngs(0)))
    assert len(net.convs) + 1 == 26
    assert sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nnx.state(net))) == 582_541


def test_perturbations_stay_valid_change_a_few_draws_and_keep_bank_sizes(archs):
    """p = 0.05: most layers unchanged, some changed, every result valid (the validator), bank
    sizes kept; p = 0 changes nothing; p = 1 redraws every layer (at most the base's count)."""
    base = jax.tree.map(lambda x: np.repeat(x[:1], 64, 0), archs)
    perturb = jax.jit(SPACE.perturb)  # p traced: one program for the three rates
    out = jax.device_get(perturb(jax.random.key(3), base, 0.05))
    SPACE.validate(out)
    assert (out["bank_size"] == base["bank_size"]).all()
    n = int(base["layers"][0].sum())
    fields = ("read", "write", "G", "kernel", "dilation", "groups")
    same = [sum(all(np.array_equal(out[f][i, b, j], base[f][i, b, j]) for f in fields)
                for b in range(BLOCKS) for j in range(base["layers"][0, b])) for i in range(64)]
    changed_share = 1 - np.mean(same) / n
    assert 0.05 < changed_share < 0.5, changed_share  # at most ~1 - 0.95^6 of the layers change
    assert len({SPACE.to_string(one(out, i)) for i in range(64)}) > 32
    kept = jax.device_get(perturb(jax.random.key(4), base, 0.0))
    assert all(np.array_equal(kept[f], base[f]) for f in base)
    fresh = jax.device_get(perturb(jax.random.key(5), base, 1.0))
    SPACE.validate(fresh)
    assert (fresh["bank_size"] == base["bank_size"]).all()
