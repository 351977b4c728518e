"""AZ-NAS's zero-cost components: expressivity, progressivity and trainability.

Lee & Ham, "AZ-NAS: Assembling Zero-Cost Proxies for Network Architecture Search", CVPR 2024. The
procedure follows the reference code for NAS-Bench-201 (github cvlab-yonsei/AZ-NAS,
`NB201/ZeroShotProxy/compute_az_nas_score.py`; the features are those of
`NB201/custom/tss_model.py`, `extract_cell_features`); the code here is written from it.

Which features: the blocks of the NB201 network in training mode (BatchNorm with batch
statistics), f_0 = the stem's output, then f_1 .. f_L = the output of every cell and of both
ResNet reduction blocks in order (L = 3N + 2; the head, BN-ReLU-pool-linear, is not used), from
`NB201SuperNet.blocks`.

  - expressivity: for each f_l [B, H, W, C], the C x C covariance of its B*H*W channel vectors
    (centred, divided by B*H*W), its eigenvalues s, p = s / sum(s), and the entropy
    -sum p log(p + 1e-8): how isotropic the feature space is. Summed over l = 0 .. L.
  - progressivity: min over l of (expressivity of f_l - expressivity of f_(l-1)), l = 1 .. L.
  - trainability: for each block l = 1 .. L, a Rademacher vector g_out (entries +-1) shaped like
    f_l and its pullback g_in = J_l^T g_out through that block alone (J_l = d f_l / d f_(l-1));
    a reduction block's g_in is pixel-unshuffled to f_l's size (2x2 pixels -> 4x the channels),
    M = g_in^T g_out / (B*H*W) [C_in, C_out] over positions, sigma = M's largest singular value
    (the reference's estimate of the Jacobian's spectral norm), and the block scores
    2 - sigma - 1 / (sigma + 1e-6), at most 0, reached at sigma = 1. Averaged over blocks; a block
    that passes g_out through unchanged (an identity cell) scores -inf, as in the reference.
A NaN total becomes -inf (the reference's rule), e.g. expressivity when a feature is all zeros.

The spectrum (`spectrum`): "reference" takes float32 eigenvalues as they come, as the reference
does. Deep NB201 features reach variances of ~1e8 (skip connections and pools add up across cells),
and a covariance of rank below C then has float32 eigenvalues of either sign around zero; one below
-1e-8 of the total makes log(p + 1e-8) NaN, and the reference's rule turns the score into -inf.
Which architecture that hits is a rounding accident (the float64 spectrum of the same covariance is
positive): 893 of NB201's 15,625 cells (5.7 %) at C=16, N=5, seed 0, and some flip between two
float32 paths that differ only in summation order. Those cells are weak ones on average (76.6 %
CIFAR-10 test accuracy against the space's 87.1 %), and psd does not rank NB201 better
(experiments/zero_cost, part C). "psd" clamps negative eigenvalues to 0, which typically
changes a finite entropy by < 1e-6 and keeps the -inf of all-zero features. Both are always returned:
az_expressivity / az_progressivity from `spectrum`, az_expressivity_psd / az_progressivity_psd.
AZ-NAS itself ranks candidates by the sum of log(rank / K) of these three and of the FLOPs, which
needs all K candidates' scores, so it is not a per-candidate proxy here: it is
`jaxnas.proxies.combine.Rule("logrank", ("az_expressivity", "az_progressivity", "az_trainability",
"flops"), (1.0, 1.0, 1.0, 1.0))` over a `jaxnas score` run's columns (the reference notebook,
NB201/tss_general.ipynb).

Where this deviates from the reference, and why:
  - the inputs: the reference feeds Gaussian noise of the loader's batch shape, a new draw per
    network; here `inputs="noise"` (the default) draws it once from `seed`, so every candidate sees
    the same noise and a score depends only on (seed, architecture) as all jaxnas proxies do
    (`inputs="images"` scores the real batch instead). The Rademacher vectors likewise come from
    `seed` and the block index.
  - the weights: the reference re-initialises the network (kaiming-normal, fan-in, for conv and
    linear kernels). jaxnas draws PyTorch's default U(+-1/sqrt(fan_in)); with `init="kaiming"` (the
    default; ProxyScorer uses it unless fast training changed the weights) every kernel u is
    mapped through the normal quantile function, ndtri((u sqrt(fan_in) + 1) / 2) * sqrt(2 / fan_in),
    which turns that uniform draw into exactly the kaiming-normal distribution. BatchNorm is already
    scale 1, bias 0 in a fresh network; the linear bias the reference zeros does not reach a feature.
  - float32 throughout, as the reference (which runs float32 on a GPU); matrix products at highest
    precision so TF32 accelerators do not change the eigenvalues.

`az_scores` is traced (jit, vmap; the blocks in the supernet's differentiable single-path form,
or `impl`'s); `eager_az_scores` computes the same for a host architecture through the eager
kernels, which ProxyScorer uses with `host_gradients` (CPU) when trainability is asked for: the
traced blocks' input gradients took ~15 s per C=16, N=5 candidate at 128 images on 2 cores, the
eager ones ~1.5 s. Without trainability ProxyScorer keeps it traced with the `switch` formulation.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxnas.proxies.gradient import host_passes
from jaxnas.spaces.arch import Choice, wrap

INPUTS = ("noise", "images")
SPECTRA = ("reference", "psd")
INITS = ("kaiming", "as_is")
_HI = jax.lax.Precision.HIGHEST


def noise_input(seed: int, shape, dtype=jnp.float32):
    """The Gaussian input batch of `inputs="noise"` (NHWC), the same for every candidate."""
    return jax.random.normal(jax.random.fold_in(jax.random.key(seed), 0), shape, dtype)


def probe(seed: int, block: int, shape, dtype=jnp.float32):
    """The Rademacher vector (+-1) whose pullback through block `block` (1 .. L) trainability reads."""
    key = jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), 1), block)
    return jax.random.rademacher(key, shape, dtype)


def kaiming_normal(params):
    """Conv / linear kernels drawn as PyTorch's default U(+-1/sqrt(fan_in)) mapped to the
    kaiming-normal fan-in draw N(0, 2 / fan_in) by the normal quantile function (module doc);
    other leaves unchanged. Zero kernels (the ops a candidate does not use) stay zero. All kernels
    go through one ndtri (one per leaf compiled ~2 s at C=4 on XLA:CPU)."""
    leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
    kernels = [i for i, (path, _) in enumerate(leaves) if getattr(path[-1], "key", None) == "kernel"]
    if not kernels:
        return params
    fan_in = [int(np.prod(leaves[i][1].shape[:-1])) for i in kernels]
    u = jnp.concatenate([leaves[i][1].reshape(-1) * np.float32(np.sqrt(f)) for i, f in zip(kernels, fan_in)])
    tiny = float(np.finfo(np.float32).eps)
    z = jax.scipy.special.ndtri(jnp.clip((u + 1.0) / 2.0, tiny, 1.0 - tiny))
    out, at = [x for _, x in leaves], 0
    for i, f in zip(kernels, fan_in):
        x = leaves[i][1]
        out[i] = (z[at:at + x.size].reshape(x.shape) * np.float32(np.sqrt(2.0 / f))).astype(x.dtype)
        at += x.size
    return jax.tree.unflatten(treedef, out)


def entropy_of_covariance(f, spectrum: str = "reference"):
    """Expressivity of one feature map [B, H, W, C]: the entropy of its normalised covariance
    spectrum; `spectrum` "reference" or "psd" (negative eigenvalues, float32 rounding, set to 0:
    module doc)."""
    return _entropies(_covariance_spectrum(f))[spectrum]


def _covariance_spectrum(f):
    x = f.reshape(-1, f.shape[-1])
    x = x - x.mean(0, keepdims=True)
    return jnp.linalg.eigvalsh(jnp.dot(x.T, x, precision=_HI) / x.shape[0])


def _entropies(s) -> dict:
    """{spectrum: entropy of the normalised spectrum `s`} for each of SPECTRA."""
    def entropy(s):
        p = s / s.sum()
        return jnp.sum(-p * jnp.log(p + 1e-8))
    return {"reference": entropy(s), "psd": entropy(jnp.maximum(s, 0.0))}


def pixel_unshuffle(x, r: int):
    """[B, H, W, C] -> [B, H/r, W/r, r*r*C]: each r x r patch of pixels becomes channels
    (PyTorch's PixelUnshuffle up to the order of the channels, which no singular value sees)."""
    b, h, w, c = x.shape
    x = x.reshape(b, h // r, r, w // r, r, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h // r, w // r, r * r * c)


def block_trainability(g_in, g_out):
    """A block's trainability score from a probe g_out and its pullback g_in (module doc)."""
    identity = jnp.all(g_in == g_out) if g_in.shape == g_out.shape else jnp.bool_(False)
    if g_in.shape[1] != g_out.shape[1]:
        g_in = pixel_unshuffle(g_in, g_in.shape[1] // g_out.shape[1])
    gi, go = g_in.reshape(-1, g_in.shape[-1]), g_out.reshape(-1, g_out.shape[-1])
    m = jnp.dot(gi.T, go, precision=_HI) / go.shape[0]
    sigma = jnp.linalg.svd(m, compute_uv=False)[0]
    return jnp.where(identity, -jnp.inf, 2.0 - sigma - 1.0 / (sigma + 1e-6))


def _finite_or_ninf(x):
    return jnp.where(jnp.isnan(x), -jnp.inf, x)


def _check(inputs, init, spectrum):
    if inputs not in INPUTS or init not in INITS or spectrum not in SPECTRA:
        raise ValueError(f"inputs must be one of {INPUTS}, init one of {INITS} and spectrum one of "
                         f"{SPECTRA}, got {inputs!r}, {init!r}, {spectrum!r}")


def _az_from(feats, pairs, spectrum: str = "reference"):
    """The scores from the block features [f_0 .. f_L] and the (probe, pullback) pairs of blocks
    1 .. L (empty: no trainability): expressivity and progressivity from `spectrum`, and from the
    "psd" spectrum as az_expressivity_psd / az_progressivity_psd whichever `spectrum` is."""
    entropies = [_entropies(_covariance_spectrum(f)) for f in feats]
    out = {}
    for suffix, key in (("", spectrum), ("_psd", "psd")):
        expr = jnp.stack([e[key] for e in entropies])
        out[f"az_expressivity{suffix}"] = _finite_or_ninf(expr.sum())
        out[f"az_progressivity{suffix}"] = _finite_or_ninf(jnp.min(expr[1:] - expr[:-1]))
    if pairs:
        out["az_trainability"] = _finite_or_ninf(jnp.mean(jnp.stack([block_trainability(g_in, g_out)
                                                                     for g_out, g_in in pairs])))
    return out


def az_scores(graphdef, params, stats, arch, images, labels, *, seed: int = 0, inputs: str = "noise",
              init: str = "kaiming", trainability: bool = True, impl=None, spectrum: str = "reference"):
    """AZ-NAS's expressivity, progressivity and (with `trainability`) trainability of one
    architecture (float32, vmappable): {"az_expressivity", "az_progressivity", "az_expressivity_psd",
    "az_progressivity_psd"[, "az_trainability"]}.
    `inputs`, `init`, `spectrum`: the module doc; `impl` overrides the supernet's single-path formulation.
    `eager_az_scores` computes the same for a host architecture through the eager kernels."""
    del labels
    _check(inputs, init, spectrum)
    if init == "kaiming":
        params = kaiming_normal(params)
    x = noise_input(seed, images.shape, images.dtype) if inputs == "noise" else images

    def block(i, h):  # block i alone, a fresh module per call so each vjp traces its own state
        net = nnx.merge(graphdef, params, stats, copy=True)
        return net.blocks(wrap(arch), train=True, single_path_impl=impl)[i](h)

    num_blocks = len(nnx.merge(graphdef, params, stats, copy=True).blocks(wrap(arch)))
    feats, pairs = [block(0, x)], []
    for i in range(1, num_blocks):
        if trainability:
            f, pullback = jax.vjp(functools.partial(block, i), feats[-1])
            g_out = probe(seed, i, f.shape, f.dtype)
            pairs.append((g_out, pullback(g_out)[0]))
        else:
            f = block(i, feats[-1])
        feats.append(f)
    return _az_from(feats, pairs, spectrum)


_kaiming_normal_jit = jax.jit(kaiming_normal)
_az_from_jit = jax.jit(_az_from, static_argnums=2)
_probe_jit = jax.jit(probe, static_argnums=(0, 1, 2, 3))
_noise_jit = jax.jit(noise_input, static_argnums=(0, 1, 2))


def eager_az_scores(graphdef, params, stats, arch, images, labels, *, seed: int = 0, inputs: str = "noise",
                    init: str = "kaiming", trainability: bool = True, impl=None, spectrum: str = "reference",
                    space):
    """`az_scores` of a concrete host architecture, each block and its pullback through the space's
    host passes (`space.host_passes.block_pullbacks`): on
    XLA:CPU the traced blocks' input gradients took ~15 s per C=16, N=5 candidate at 128 images."""
    del labels, impl
    _check(inputs, init, spectrum)
    if init == "kaiming":
        params = _kaiming_normal_jit(params)
    x = _noise_jit(seed, tuple(images.shape), images.dtype) if inputs == "noise" else images
    probe_fn = (lambda i, y: _probe_jit(seed, i, tuple(y.shape), y.dtype)) if trainability else None
    feats, pairs = host_passes(space).block_pullbacks(graphdef, params, stats, x, Choice(arch), probe_fn)
    return _az_from_jit(feats, pairs, spectrum)
