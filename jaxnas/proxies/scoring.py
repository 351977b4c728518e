"""Score many architectures with training-free proxies in one jitted, chunked program.

Each candidate gets a freshly initialised network, as in the reference procedures (a new PyTorch
network per architecture): its weights are drawn inside the program from
fold_in(seed, space.hash(arch)) (NB201: its index), so an architecture's score depends only on
(seed, architecture, batch), never on which other candidates share the call. `init="shared"` instead gives
every candidate the same supernet weights (cheaper, not the reference protocol).

The DAS fast-training strategy: before scoring, each candidate takes `fast_train_steps` SGD steps
(momentum 0.9, Nesterov, weight decay 5e-4, lr `fast_train_lr`) on fixed training batches.

Everything that differentiates the network (those steps, the gradient proxies, ZiCo, AZ-NAS's
block pullbacks for its trainability) runs inside the program by default; with `host_gradients` (jaxnas's
default on CPU) it runs one candidate at a time through the eager kernels (the space's `host_passes`; `EAGER`
below) instead, since on XLA:CPU the traced single-path gradient at C=16, N=5 compiles for many minutes and
runs ~50x slower than PyTorch (benchmarks/BENCHMARKS.md section 1). Both give the same weights and scores up
to float rounding.
"""
from __future__ import annotations

import contextlib
import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxnas import backend, cpu_kernels, registry, spaces
from jaxnas import data as data_lib
from jaxnas.config import Config
from jaxnas.evaluate import map_chunked
from jaxnas.nn import init, split
from jaxnas.proxies import activation, aznas, gradient
from jaxnas.proxies import cost as cost_proxies
from jaxnas.proxies.activation import DAS_WEIGHTS
from jaxnas.rundir import RunError
from jaxnas.spaces.arch import Choice, Gates
from jaxnas.train import optim, steps
from jaxnas.train.state import create

# proxy name -> (function producing it, the output it is read from)
PROXIES = {
    "naswot": (activation.activation_scores, "naswot"),
    "das": (activation.activation_scores, "das"),
    "grad_norm": (gradient.loss_gradient_scores, "grad_norm"),
    "snip": (gradient.loss_gradient_scores, "snip"),
    "synflow": (gradient.synflow, "synflow"),
    "jacov": (gradient.jacov, "jacov"),
    "zico": (gradient.zico, "zico"),
    "az_expressivity": (aznas.az_scores, "az_expressivity"),
    "az_progressivity": (aznas.az_scores, "az_progressivity"),
    "az_trainability": (aznas.az_scores, "az_trainability"),
    "params": (cost_proxies.cost_scores, "params"),
    "flops": (cost_proxies.cost_scores, "flops"),
    "layers": (cost_proxies.cost_scores, "layers"),
}
# One line per proxy for `jaxnas list`.
# proxy function -> its twin for a concrete host architecture through the eager kernels (host_gradients)
EAGER = {**gradient.EAGER, aznas.az_scores: aznas.eager_az_scores}
INITS = ("per_arch", "shared")
FAST_TRAIN_MOMENTUM, FAST_TRAIN_WEIGHT_DECAY = 0.9, 5e-4  # DAS fast training: Nesterov SGD


def parse_proxies(spec: str) -> list[str]:
    names = [s.strip() for s in spec.split(",") if s.strip()]
    bad = [n for n in names if n not in PROXIES]
    if not names or bad:
        raise ValueError(f"unknown proxy {', '.join(bad) or spec!r}; available: {', '.join(PROXIES)}")
    return names


class ProxyScorer:
    """Scores architectures of `space` (NB201 by default) with `proxies` (names from PROXIES) at
    width C, depth N.

    The network is the space's supernet with the standalone network's semantics (affine BN with
    running statistics, PyTorch default initialisation) as its single path. `host_gradients`: run the
    fast-training steps and the gradient proxies on the host through the eager kernels, one
    candidate at a time (for CPU; `jaxnas score` sets it there), instead of inside the jitted,
    chunked program. Without either it changes nothing.
    """

    def __init__(self, proxies, *, C=16, N=5, num_classes=10, seed=0, init="per_arch", chunk_size=1,
                 das_weight=1.0, das_da="logdet", fast_train_steps=0, fast_train_lr=0.1,
                 single_path_impl="merged",
                 host_gradients=False, az_spectrum="reference", space=None):
        if init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {init!r}")
        if das_da not in activation.DAS_DA:
            raise ValueError(f"das_da must be one of {activation.DAS_DA}, got {das_da!r}")
        if az_spectrum not in aznas.SPECTRA:
            raise ValueError(f"az_spectrum must be one of {aznas.SPECTRA}, got {az_spectrum!r}")
        if chunk_size < 1 or fast_train_steps < 0:
            raise ValueError("chunk_size must be >= 1 and fast_train_steps >= 0")
        self.proxies = parse_proxies(proxies) if isinstance(proxies, str) else list(proxies)
        self.seed, self.init, self.chunk_size = seed, init, chunk_size
        self.fast_train_steps, self.fast_train_lr = fast_train_steps, fast_train_lr
        self.space = space = space or spaces.get(registry.DEFAULT_SPACE)
        self._make = functools.partial(space.supernet, C, N, num_classes, affine=True,
                                       track_running_stats=True,
                                       single_path_impl=single_path_impl)
        self.graphdef, self.params, self.stats = split(self._make(rngs=nnx.Rngs(seed)))
        fns = {}
        trainability = "az_trainability" in self.proxies  # AZ-NAS differentiates only for this one
        for name in self.proxies:
            fn = PROXIES[name][0]
            if fn is activation.activation_scores:  # forward only: the chosen op alone (`switch`) is fastest
                # fresh weights have zero BN biases: convs of all-zero nodes output zeros, skip them
                fn = functools.partial(fn, das_weight=das_weight, das_da=das_da, impl="switch",
                                       prune=True if fast_train_steps else "zero")
            elif fn is aznas.az_scores:  # reference init unless fast training moved the weights (aznas doc)
                # without trainability AZ-NAS is forward only: traced with the chosen op alone, like
                # NASWOT (1.9x the host path's throughput on 2 CPU cores, BENCHMARKS.md section 12)
                fn = functools.partial(fn, seed=seed, init="as_is" if fast_train_steps else "kaiming",
                                       trainability=trainability, spectrum=az_spectrum,
                                       **({} if trainability else {"impl": "switch"}))
            elif fn is cost_proxies.cost_scores:
                fn = functools.partial(fn, space=space, C=C, N=N, num_classes=num_classes)
            fns.setdefault(PROXIES[name][0], fn)
        gradient_fns = [f for f in fns if f in EAGER and (f is not aznas.az_scores or trainability)]
        self.host = bool(host_gradients and (fast_train_steps or gradient_fns))
        self._fns = [f for k, f in fns.items() if not (self.host and k in gradient_fns)]  # traced
        # the eager twin takes the keywords the traced function was given
        self._eager_fns = [functools.partial(EAGER[k], space=space, **getattr(fns[k], "keywords", {}))
                           for k in gradient_fns] if self.host else []
        # YNNPACK for convolutions, matmuls and reductions (BatchNorm's statistics: +12 % NASWOT
        # throughput on 2 cores); its elementwise fusions made the scorer slower (BENCHMARKS.md section 5)
        self._run = cpu_kernels.jit(self._score_all, fusions=(cpu_kernels.DOT, cpu_kernels.REDUCE))
        # on the host: one candidate's fresh weights, then its traced scores, each one program
        self._prepare_one = jax.jit(self._prepare)
        self._score_one = cpu_kernels.jit(self._proxies, fusions=(cpu_kernels.DOT, cpu_kernels.REDUCE))
        # mixed cells (pruning search): every proxy traced, one cell per call
        self._traced_fns = list(fns.values())
        self._score_mixed_one = cpu_kernels.jit(self._mixed, fusions=(cpu_kernels.DOT, cpu_kernels.REDUCE))
        self._mixed_weights = None

    def init_params(self, key, arch=None):
        """Fresh weights, distributed as PyTorch's defaults (`jaxnas.nn.init`). With `arch`, only
        the leaves that architecture uses are drawn (the others are zeros), with the values the
        whole draw gives them: a candidate uses ~25 % of the supernet's weights, and the draw was
        ~5 % of a NASWOT score's time on 2 CPU cores."""
        used = None if arch is None else self.space.used_params(self.params, arch)
        return init.fresh_params(key, self.params, used)

    def _fast_train(self, params, stats, arch, train_images, train_labels, host=False):
        """`fast_train_steps` SGD steps of one candidate, cycling over fixed batches [T, B, H, W, 3]:
        inside the program (`arch` traced), or with `host` through the eager kernels (`arch` a host
        array, called outside jit)."""
        tx = optim.sgd(self.fast_train_lr, FAST_TRAIN_MOMENTUM, True, FAST_TRAIN_WEIGHT_DECAY)
        used = self.space.used_params(params, arch)

        def step(t, state):
            i = t % train_images.shape[0]
            return steps.weight_step(tx, 0.0, self.graphdef, state, train_images[i], train_labels[i],
                                     self.fast_train_lr, Choice(arch), used=used,
                                     host=self.space.host_passes if host else None)[0]

        if not host:
            state = jax.lax.fori_loop(0, self.fast_train_steps, step,
                                      create(params, stats, 0, tx.init(params)))
            return state.params, state.stats
        # the eager update donates the state: never hand it the scorer's own weights
        if self.init == "shared":
            params = jax.tree.map(jnp.copy, params)
        state = create(params, stats, 0, tx.init(params))
        for t in range(self.fast_train_steps):
            state = step(t, state)
        return state.params, state.stats

    def _prepare(self, params, stats, arch, index, train_images, train_labels):
        """The weights a candidate is scored with: fresh (per_arch) or shared, after the fast-training
        steps unless those run on the host."""
        if self.init == "per_arch":
            params = self.init_params(jax.random.fold_in(jax.random.key(self.seed), index), arch)
        if self.fast_train_steps and not self.host:
            params, stats = self._fast_train(params, stats, arch, train_images, train_labels)
        return params, stats

    def _apply(self, fns, params, stats, arch, images, labels):
        out = {}
        for fn in fns:
            out.update(fn(self.graphdef, params, stats, arch, images, labels))
        return out

    def _proxies(self, params, stats, arch, images, labels):
        return self._apply(self._fns, params, stats, arch, images, labels)

    def _mixed(self, params, stats, mask, images, labels):
        return self._apply(self._traced_fns, params, stats, Gates(mask), images, labels)

    def mixed_weights(self):
        """(params, stats) every mixed cell is scored with: one fresh draw of the whole supernet
        from key(seed) (init per_arch; TE-NAS scores a round's candidates and the unpruned network
        with the same weights), or the shared weights."""
        if self._mixed_weights is None:
            params = self.init_params(jax.random.key(self.seed)) if self.init == "per_arch" else self.params
            self._mixed_weights = (params, self.stats)
        return self._mixed_weights

    def score_mixed(self, masks, images, labels) -> dict:
        """Scores of mixed cells, `masks` bool [K, *space.relaxed_spec.shape] (NB201 [K, 6, 5]):
        every edge the mean of the ops its mask keeps (`Gates`; TE-NAS's pruned supernet), all
        with `mixed_weights()`, {output name: float64 [K]} on the host.

        Every proxy runs traced, one cell per call (one program whatever K): on CPU the forward
        ones (naswot, das, az expressivity / progressivity) and the cost ones are fast, the
        gradient ones slow (no eager twin for mixed cells)."""
        if self.fast_train_steps:
            raise ValueError("fast training applies to single architectures, not to mixed cells")
        relaxed = getattr(self.space, "relaxed_spec", None)
        masks = np.asarray(masks)
        if relaxed is None or masks.ndim != 1 + len(relaxed.shape) or masks.shape[1:] != tuple(relaxed.shape):
            want = "?" if relaxed is None else ", ".join(map(str, relaxed.shape))
            raise ValueError(f"expected mixed-cell masks of shape [K, {want}], got {masks.shape}")
        if not masks.any(-1).all():
            raise ValueError("every decision of a mixed cell must keep at least one option")
        params, stats = self.mixed_weights()
        with self._precision():
            rows = [jax.device_get(self._score_mixed_one(params, stats, jnp.asarray(m, jnp.float32), images,
                                                         labels))
                    for m in masks]
        return {k: np.asarray([r[k] for r in rows], np.float64) for k in rows[0]}

    def _score_all(self, params, stats, archs, indices, images, labels, train_images, train_labels):
        def one(a_i):
            p, s = self._prepare(params, stats, *a_i, train_images, train_labels)
            return self._proxies(p, s, a_i[0], images, labels)
        return map_chunked(one, (archs, indices), min(self.chunk_size, archs.shape[0]))

    def candidate_weights(self, arch, train_images=None, train_labels=None):
        """(params, stats) one architecture (NB201: int32 [6]) is scored with: its fresh (or the
        shared) weights after the fast-training steps, if any, on train_images [T, B, H, W, 3]."""
        arch = self._validate(arch, 0)
        return self._weights(arch, *self._train_batches(train_images, train_labels, None))

    def _validate(self, archs, batch_dims: int):
        """Host int32 architectures with `batch_dims` leading axes, or ValueError."""
        archs = np.asarray(self.space.validate(np.asarray(archs)), np.int32)
        want = batch_dims + len(self.space.spec.shape)
        if archs.ndim != want:
            shape = ", ".join(["K"] * batch_dims + [str(n) for n in self.space.spec.shape])
            raise ValueError(f"expected architectures of shape [{shape}], got {archs.shape}")
        return archs

    def _weights(self, arch, train_images, train_labels):
        """candidate_weights for a validated host `arch` and resolved training batches."""
        index = np.int32(self.space.hash(arch))
        params, stats = self._prepare_one(self.params, self.stats, jnp.asarray(arch), index, train_images,
                                          train_labels)
        if self.fast_train_steps and self.host:
            params, stats = self._fast_train(params, stats, arch, train_images, train_labels, host=True)
        return params, stats

    def _score_host(self, arch, images, labels, train_images, train_labels):
        """One candidate's scores, its gradients through the eager kernels (`arch` a host array)."""
        params, stats = self._weights(arch, train_images, train_labels)
        out = dict(self._score_one(params, stats, jnp.asarray(arch), images, labels)) if self._fns else {}
        for fn in self._eager_fns:
            out.update(fn(self.graphdef, params, stats, arch, images, labels))
        return jax.device_get(out)

    def _train_batches(self, train_images, train_labels, images):
        if self.fast_train_steps and train_images is None:
            raise ValueError("fast_train_steps > 0 needs train_images / train_labels")
        if train_images is None:  # placeholders: the program's signature needs them
            shape = (1, 1) + (tuple(images.shape[1:]) if images is not None else (1, 1, 3))
            return jnp.zeros(shape, jnp.float32), jnp.zeros((1, 1), jnp.int32)
        return train_images, train_labels

    def __call__(self, archs, images, labels, train_images=None, train_labels=None) -> dict:
        """Scores of `archs` (NB201: int32 [K, 6]) on one batch: {output name: float64 [K]} on the host.

        images: normalised float32 [B, H, W, 3]; labels int32 [B]; with fast training,
        train_images [T, B', H, W, 3] and train_labels [T, B'].
        """
        archs = self._validate(archs, 1)
        train_images, train_labels = self._train_batches(train_images, train_labels, images)
        with self._precision():
            return self._score(archs, images, labels, train_images, train_labels)

    @contextlib.contextmanager
    def _precision(self):
        # synflow computes in float64 (gradient.py); the other proxies keep their explicit float32
        # (the float32 proxies computed in the same program meet float64 constants there: standard
        # promotion for this path even under the test suite's strict setting)
        x64 = "synflow" in self.proxies
        with jax.enable_x64(True) if x64 else contextlib.nullcontext(), \
                jax.numpy_dtype_promotion("standard") if x64 else contextlib.nullcontext():
            yield

    def _score(self, archs, images, labels, train_images, train_labels):
        if self.host:  # one candidate at a time, its gradients through the eager kernels
            rows = [self._score_host(a, images, labels, train_images,
                                     train_labels) for a in archs.astype(np.int32)]
            return {k: np.asarray([r[k] for r in rows], np.float64) for k in rows[0]}
        indices = np.asarray(self.space.hash(archs), np.int32)
        out = self._run(self.params, self.stats, jnp.asarray(archs, jnp.int32), jnp.asarray(indices), images,
                        labels,
                        train_images, train_labels)
        return {k: np.asarray(v, np.float64) for k, v in jax.device_get(out).items()}


def proxy_batches(ds, cfg: Config):
    """The scoring batch and the fast-training batches ((None, None) without fast training):
    disjoint slices of one seeded permutation of the training set, normalised, not augmented
    (NASWOT scores un-augmented images)."""
    n = cfg.proxy.batch_size + cfg.proxy.fast_train_steps * cfg.proxy.fast_train_batch_size
    if n > len(ds.train_labels):
        raise RunError(f"proxies need {n} training images, the dataset has {len(ds.train_labels)}")
    pick = np.random.default_rng(cfg.seed).permutation(len(ds.train_labels))[:n]
    x = np.asarray(data_lib.normalize(ds.train_images[pick], ds.mean, ds.std))
    y = ds.train_labels[pick].astype(np.int32)
    b = cfg.proxy.batch_size
    train = (None, None)
    if cfg.proxy.fast_train_steps:
        shape = (cfg.proxy.fast_train_steps, cfg.proxy.fast_train_batch_size)
        train = (x[b:].reshape(shape + x.shape[1:]), y[b:].reshape(shape))
    return (x[:b], y[:b]), train


def das_weight(cfg: Config) -> float:
    """The configured DAS weight, or the calibrated one of the configured DA."""
    return DAS_WEIGHTS[cfg.proxy.das_da] if cfg.proxy.das_weight is None else cfg.proxy.das_weight


def check_space(space) -> None:
    """ValueError unless the proxies can build and read `space`'s networks (`Space.proxy_scoring`)."""
    if not space.proxy_scoring:
        offer = ", ".join(name for name, s in spaces.all_spaces().items() if s.proxy_scoring)
        raise ValueError("the training-free proxies build and read the networks of spaces that offer them "
                         f"(`Space.proxy_scoring`: {offer}); space {space.name!r} does not")


def make_scorer(cfg: Config, proxies, num_classes: int) -> ProxyScorer:
    space = spaces.get(cfg.space, cfg)
    check_space(space)
    return ProxyScorer(proxies, **space.network_kwargs(cfg), num_classes=num_classes, seed=cfg.seed,
                       init=cfg.proxy.init,
                       chunk_size=backend.eval_chunk_size(cfg.eval.chunk_size, accelerator_default=16),
                       das_weight=das_weight(cfg), das_da=cfg.proxy.das_da,
                       fast_train_steps=cfg.proxy.fast_train_steps, fast_train_lr=cfg.proxy.fast_train_lr,
                       host_gradients=space.host_path(cfg),  # CPU: eager gradients
                       az_spectrum=cfg.proxy.az_spectrum, space=space)
