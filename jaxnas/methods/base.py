"""What every method shares: the supernet, its single-path weight step, and candidate ranking.

A method supplies `init_state`, a pure `train_step` (jitted by the shared loop with the state
donated), optional `epoch_end` metrics, and `finish`, which returns the chosen architecture.
A method file holds only what is particular to that method.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxnas import evaluate as evaluation
from jaxnas.config import Config
from jaxnas.nn import split
from jaxnas.spaces.nb201.networks import NB201SuperNet, used_params
from jaxnas.spaces import nb201
from jaxnas.train import state as state_lib
from jaxnas.train import steps

# Tags for step_key: each purpose draws its own stream from (seed, step).
KEY_AUGMENT_W, KEY_AUGMENT_A, KEY_SAMPLE, KEY_METHOD = range(4)
SELECT_KEY_STEP = -1  # selection draws with this "step", apart from every training step


@dataclasses.dataclass
class EvalContext:
    """Host-side inputs of evaluation: a fixed validation batch (normalised) and recal batches."""
    images: Any
    labels: Any
    recal_images: Any = None


def resolve_impl(impl: str, forward_only: bool = False) -> str:
    """The single-path formulation to use (benchmarks/BENCHMARKS.md). `auto`: `switch` on GPU and
    for forward-only passes everywhere; `eager` (jaxnas.spaces.nb201.eager) for gradients on CPU, where
    convolution gradients inside traced control flow are 10-20x slower and the branch-free `merged`
    program at C=16, N=5 compiles for minutes and runs ~50x slower than PyTorch. `eager` needs a
    concrete architecture, so forward-only passes (vmapped candidates) use `switch` instead."""
    if impl == "auto":
        impl = "switch" if forward_only or jax.default_backend() == "gpu" else "eager"
    return "switch" if impl == "eager" and forward_only else impl


def traced_impl(impl: str) -> str:
    """The formulation of a traced (jitted, vmapped) differentiated pass: `resolve_impl`, with
    `merged` where that says `eager` (which needs a host architecture)."""
    impl = resolve_impl(impl)
    return "merged" if impl == "eager" else impl


def eval_chunk_size(cfg: Config, accelerator_default: int = 1) -> int:
    """Candidates per vmapped chunk: cfg.eval_chunk_size, or when 0: 1 on CPU, `accelerator_default`
    elsewhere. On an H100 (BENCHMARKS.md section 8) SETN's selection (512 images per candidate) is
    fastest one candidate at a time (0.70 s vs 0.98-1.09 s for chunks of 4-64: vmapped, `switch`
    runs every op), while NASWOT at 128 images gains from chunks (16: 273 archs/s, 1: 188)."""
    if cfg.eval_chunk_size:
        return cfg.eval_chunk_size
    return 1 if jax.default_backend() == "cpu" else accelerator_default


class SupernetMethod:
    """Base for methods that train a weight-sharing NB201 supernet."""

    name = "base"
    uses_arch_batch = False   # does train_step take a batch from the architecture half?
    split = "search"          # "search": weights/arch halves of the training set; "full": all of it

    def __init__(self, cfg: Config, num_classes: int):
        self.cfg = cfg
        self.graphdef, self._params, self._stats = split(self.build_model(num_classes))

    def build_model(self, num_classes: int) -> nnx.Module:
        cfg = self.cfg
        return NB201SuperNet(cfg.C, cfg.N, num_classes, affine=cfg.affine,
                             track_running_stats=cfg.track_running_stats,
                             single_path_impl=traced_impl(cfg.single_path_impl), rngs=nnx.Rngs(cfg.seed))

    @property
    def host_step(self) -> bool:
        """Whether `train_step` runs outside jit: with the eager single path (CPU default) the
        weight step needs the sampled architecture on the host (`jaxnas.spaces.nb201.eager`)."""
        return resolve_impl(self.cfg.single_path_impl) == "eager"

    def init_state(self) -> state_lib.SearchState:
        return state_lib.create(self._params, self._stats, self.cfg.seed)

    # --- shared pure pieces -------------------------------------------------------------
    def weight_step(self, state, images, labels, arch, lr, mode="single"):
        """SGD step on the shared weights for one architecture (single path) or op weights."""
        use_mask = mode == "single" and not self.cfg.decay_unsampled
        eager = mode == "single" and self.host_step
        if eager:
            arch = np.asarray(arch)
        used = used_params(state.params, arch) if use_mask else None
        if eager:
            return steps.eager_weight_step(self.cfg, self.graphdef, state, images, labels, lr, arch, used=used)
        return steps.weight_step(self.cfg, self.graphdef, state, images, labels, lr, arch, mode=mode, used=used)

    def rank(self, state, archs, ctx: EvalContext, mode="single"):
        """Validation loss/accuracy of candidates `archs` with the shared weights (one jitted call)."""
        return evaluation.evaluate(self.graphdef, state.params, state.stats, archs, ctx.images, ctx.labels,
                                   mode=mode, bn=self.cfg.eval_bn, chunk_size=eval_chunk_size(self.cfg),
                                   recal_images=ctx.recal_images,
                                   impl=resolve_impl(self.cfg.single_path_impl, forward_only=True))

    def pick_best(self, state, archs, ctx: EvalContext) -> dict:
        """Evaluate `archs` and return the most accurate (ties: lower loss, then first); accuracies
        in percent, as everywhere jaxnas writes them."""
        res = jax.device_get(self.rank(state, jnp.asarray(archs), ctx))
        acc, loss = 100 * np.asarray(res["acc"], np.float64), np.asarray(res["loss"])
        order = np.lexsort((np.arange(len(acc)), loss, -acc))
        best = int(order[0])
        return {"arch": np.asarray(archs[best]), "valid_acc": float(acc[best]), "valid_loss": float(loss[best]),
                "candidates": [{"arch": nb201.to_string(a), "valid_acc": float(c), "valid_loss": float(l)}
                               for a, c, l in zip(np.asarray(archs), acc, loss)]}

    def select_key(self, state):
        return state_lib.step_key(state.replace(step=jnp.int32(SELECT_KEY_STEP)), KEY_SAMPLE)

    # --- hooks --------------------------------------------------------------------------
    def train_step(self, state, wbatch, abatch, lr):
        raise NotImplementedError

    def epoch_end(self, state, ctx: EvalContext) -> dict:
        return {}

    def finish(self, state, ctx: EvalContext) -> dict:
        raise NotImplementedError
