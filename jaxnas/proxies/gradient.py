"""Gradient-based zero-cost proxies, for comparison with NASWOT/DAS.

Definitions follow Abdelfattah et al., "Zero-Cost Proxies for Lightweight NAS" (ICLR 2021) and
NASLib's zero-cost predictors (the values in ../shared/data/nb201/naslib_zc_nasbench201_partial.json):
sums over the weights of every convolution and linear layer (kernels only, no biases or BN).

  - grad_norm: sum over layers of the L2 norm of d(loss)/dW, cross-entropy on the batch;
  - snip:      sum of |W * d(loss)/dW| (Lee et al. 2019, connection sensitivity);
  - synflow:   all parameters replaced by |W|, BatchNorm removed, an all-ones input of one image,
               R = sum of the logits, score = sum of W * dR/dW (Tanaka et al. 2020). Returned as
               log(score) so it stays readable; ranks are unchanged. In float64, as the reference
               (NASLib / zero-cost-nas call net.double()): at C=16, N=5 the score reaches e^115 on
               NB201, past float32's e^88.7 (7 of NASLib's first 100 architectures gave inf / nan).
               The caller must enable x64 (`jax.enable_x64(True)`; ProxyScorer does);
  - jacov:     Jacobians J_i = d(sum of logits)/d(x_i) for the batch, their correlation matrix C,
               score = -sum_k log(v_k + 1e-5) + 1/(v_k + 1e-5) over C's eigenvalues v (Mellor et
               al., arXiv 2006.04647v1). Computed in float32 (the reference uses float64 numpy).
  - zico:      ZiCo (Li et al., "Zero-Shot NAS via Inverse Coefficient of Variation on Gradients",
               ICLR 2023): the loss gradient g of every conv / linear kernel on each of `batches`
               batches (default 2), and score = sum over layers of log( sum over the layer's
               weights w of mean_b |g_w| / std_b(g_w) ), weights whose std is 0 left out and layers
               whose sum is 0 (no gradient reaches them) skipped. As the AZ-NAS authors' revision of
               the reference (cvlab-yonsei/AZ-NAS `NB201/ZeroShotProxy/compute_zico_score.py`, from
               SLDGroup/ZiCo `ZeroShotProxy/compute_zico.py`): one gradient per batch of the mean
               cross-entropy, zeroed between batches (the original forgot to, so its second
               "batch" was the sum of both), std with ddof 0, 2 batches. Deviation: the reference
               reads 2 loader batches (64 images each in its NB201 setup); here the scoring batch is
               split into `batches` equal parts (the default 128 images: 2 x 64), each its own
               training-mode forward with its own BatchNorm statistics. Float32, as the reference.

Every function is pure in (params, stats, arch, batch), `arch` a plain architecture read as a
`Choice` (or a container, e.g. a mixed `Gates` cell of the pruning search), and vmaps over candidates.
Parameters of ops the architecture does not use receive zero gradient and so add nothing. `EAGER` maps each to
its twin for a concrete host architecture, which takes the gradients through the space's host
passes (`space.host_passes`, the keyword `space`; NB201: its eager kernels): on XLA:CPU the traced
single-path gradient of a C=16, N=5 network compiles for many minutes; both share the reductions
below, so they compute the same scores.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxnas.nn import functional, loss_and_accuracy
from jaxnas.nn.ops import BN_EPS
from jaxnas.spaces.arch import Choice, wrap
from jaxnas.spaces.base import has


def _kernels(tree):
    """The conv / linear weight leaves of a params tree (leaves named `kernel`)."""
    leaves = jax.tree_util.tree_leaves_with_path(tree)
    return [x for path, x in leaves if getattr(path[-1], "key", None) == "kernel"]


def _loss_grads(graphdef, params, stats, arch, images, labels):
    def loss(p):
        logits, _ = functional.apply(graphdef, p, stats, images, wrap(arch), train=True)
        return loss_and_accuracy(logits, labels)[0]
    return jax.grad(loss)(params)


def _grad_norm_snip(params, grads):
    g = _kernels(grads)
    return {"grad_norm": sum(jnp.sqrt(jnp.sum(x * x)) for x in g),
            "snip": sum(jnp.sum(jnp.abs(w * x)) for w, x in zip(_kernels(params), g))}


def loss_gradient_scores(graphdef, params, stats, arch, images, labels):
    """grad_norm and snip from one backward pass."""
    return _grad_norm_snip(params, _loss_grads(graphdef, params, stats, arch, images, labels))


ZICO_BATCHES = 2  # the reference's batch_iter


def _split_batches(images, labels, batches):
    if batches < 2 or images.shape[0] % batches:
        raise ValueError(f"zico splits the batch into {batches} equal batches (>= 2): "
                         f"{images.shape[0]} images do not divide")
    n = images.shape[0] // batches
    return [(images[i * n:(i + 1) * n], labels[i * n:(i + 1) * n]) for i in range(batches)]


def _zico_from(kernel_grads):
    """ZiCo from the kernels' gradients, one list of layers per batch."""
    total = jnp.float32(0.0)
    for layer in zip(*kernel_grads):
        g = jnp.stack([x.reshape(-1) for x in layer])  # [batches, weights]
        std, mean_abs = g.std(0), jnp.abs(g).mean(0)
        ok = std > 0
        ratio = jnp.sum(jnp.where(ok, mean_abs / jnp.where(ok, std, 1.0), 0.0))
        total = total + jnp.where(ratio > 0, jnp.log(jnp.where(ratio > 0, ratio, 1.0)), 0.0)
    return {"zico": total}


def zico(graphdef, params, stats, arch, images, labels, *, batches: int = ZICO_BATCHES):
    """ZiCo of one architecture; the batches' gradients under lax.map (one gradient program, not
    `batches` copies: the traced single-path gradient is the costliest thing to compile)."""
    _split_batches(images, labels, batches)  # checks the split
    xs = images.reshape((batches, -1) + images.shape[1:])
    ys = labels.reshape(batches, -1)
    grads = jax.lax.map(lambda xy: _kernels(_loss_grads(graphdef, params, stats, arch, *xy)), (xs, ys))
    return _zico_from([[g[b] for g in grads] for b in range(batches)])


def _identity_stats(stats, dtype=None):
    """Running statistics that make eval-mode BatchNorm the identity: mean 0, var 1 - eps
    (with affine scale 1 and bias 0, i.e. |W| of a fresh network, BN drops out exactly)."""
    def one(path, s):
        name = getattr(path[-1], "key", None)
        return jnp.zeros_like(s, dtype) if name == "mean" else jnp.full_like(s, 1.0 - BN_EPS, dtype)
    return jax.tree_util.tree_map_with_path(one, stats)


def _synflow_inputs(params, stats, images):
    """|W| in float64, BatchNorm made the identity, one all-ones image (float64 needs x64 enabled)."""
    if not jax.config.jax_enable_x64:
        raise RuntimeError("synflow computes in float64: call it under jax.enable_x64(True)")
    f64 = jnp.float64
    return (jax.tree.map(lambda p: jnp.abs(p).astype(f64), params), _identity_stats(stats, f64),
            jnp.ones((1,) + images.shape[1:], f64))


def _synflow_from(pos, grads):
    return {"synflow": jnp.log(sum(jnp.sum(w * x) for w, x in zip(_kernels(pos), _kernels(grads))))}


def synflow(graphdef, params, stats, arch, images, labels):
    del labels
    pos, ident, ones = _synflow_inputs(params, stats, images)

    def r(p):
        logits, _ = functional.apply(graphdef, p, ident, ones, wrap(arch), train=False)
        return jnp.sum(logits)

    return _synflow_from(pos, jax.grad(r)(pos))


def jacov(graphdef, params, stats, arch, images, labels):
    del labels

    def out(x):
        logits, _ = functional.apply(graphdef, params, stats, x, wrap(arch), train=True)
        return jnp.sum(logits)

    return _jacov_from(jax.grad(out)(images))


def _jacov_from(grad_images):
    j = grad_images.reshape(grad_images.shape[0], -1)
    j = j - j.mean(1, keepdims=True)
    j = j / jnp.maximum(jnp.linalg.norm(j, axis=1, keepdims=True), 1e-30)
    v = jnp.linalg.eigvalsh(j @ j.T)
    k = 1e-5
    return {"jacov": -jnp.sum(jnp.log(v + k) + 1.0 / (v + k))}


# --- the same scores for a concrete host architecture, gradients through the eager kernels -------

# small reductions: XLA's own kernels (YNNPACK rejects the eigen-decomposition's layout)
_grad_norm_snip_jit = jax.jit(_grad_norm_snip)
_synflow_inputs_jit = jax.jit(_synflow_inputs)
_synflow_from_jit = jax.jit(_synflow_from)
_jacov_from_jit = jax.jit(_jacov_from)
_zico_from_jit = jax.jit(_zico_from)


def host_passes(space):
    """The host passes the eager twins run (`space.host_passes`: value_and_grad,
    summed_logits_grad, block_pullbacks, ...)."""
    if not has(space, "host_passes"):
        raise ValueError(f"space {space.name!r} has no host passes: score it traced "
                         "(host_gradients=False)")
    return space.host_passes


def eager_loss_gradient_scores(graphdef, params, stats, arch, images, labels, *, space):
    _, grads = host_passes(space).value_and_grad(graphdef, params, stats, images, labels, Choice(arch),
                                                 train=True)
    return _grad_norm_snip_jit(params, grads)


def eager_synflow(graphdef, params, stats, arch, images, labels, *, space):
    del labels
    pos, ident, ones = _synflow_inputs_jit(params, stats, images)
    grads = host_passes(space).summed_logits_grad(graphdef, pos, ident, ones, Choice(arch), train=False)
    return _synflow_from_jit(pos, grads)


def eager_jacov(graphdef, params, stats, arch, images, labels, *, space):
    del labels
    grads = host_passes(space).summed_logits_grad(graphdef, params, stats, images, Choice(arch), wrt="images")
    return _jacov_from_jit(grads)


def eager_zico(graphdef, params, stats, arch, images, labels, *, batches: int = ZICO_BATCHES, space):
    passes = host_passes(space)
    grads = [passes.value_and_grad(graphdef, params, stats, x, y, Choice(arch), train=True)[1]
             for x, y in _split_batches(images, labels, batches)]
    return _zico_from_jit([_kernels(g) for g in grads])


EAGER = {loss_gradient_scores: eager_loss_gradient_scores, synflow: eager_synflow, jacov: eager_jacov,
         zico: eager_zico}
