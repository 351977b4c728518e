"""SETN: one-shot NAS via a self-evaluated template network (Dong & Yang, ICCV 2019).

Follows xautodl's exps/NAS-Bench-201-algos/SETN.py and models/cell_searchs/search_model_setn.py.
Each training step does two updates, as `search_func` there:

  - template network: one architecture drawn uniformly (one op per edge, `dync_genotype(True)`)
    and one SGD step of the shared weights on the weights-half batch (`self.weight_step`);
  - evaluator: architecture logits alpha [6, 5] take one Adam step on the architecture-half batch
    with the network in weighted ("joint") mode, every edge mixing its ops by softmax(alpha).
    Only alpha moves (the weights' gradients of this step are dropped, as the reference's
    `a_optimizer` holds only alpha). Adam is PyTorch's: lr 3e-4, betas (0.5, 0.999) and weight
    decay 1e-3 added to the gradient (L2, not decoupled AdamW) -- `jaxnas.train.optim.adam_l2`.

The forward of the evaluator step is in training mode (batch statistics), like the reference's
`network.train()` joint forward, and its BatchNorm running statistics are KEPT: in PyTorch the
joint-mode forward updates every tracked running statistic (the stem, the ResNet blocks and the
head always; the search cells too when `track_running_stats`). Candidate ranking with the default
`eval_bn="batch"` does not read them.

Candidates (`get_best_arch` / `return_topK`): the `select_num` architectures of highest log-probability
sum_e log_softmax(alpha)[e, op_e] among all 15,625 (one vectorised top-k), or with
`setn_select="sample"` that many drawn from the evaluator's distribution (the reference's
commented-out `dync_genotype(False)` variant; duplicates possible). They are ranked with the shared
weights in one vmapped call and the most accurate wins; this runs at every epoch end (logged as
`selected_arch` / `selected_valid_acc`) and once more at the end.

Deviations from the reference, on purpose:
  - all candidates are scored on one fixed validation batch (`eval_batch_size` images from the
    architecture half), where the reference gives each candidate the next batch of the validation
    loader, so its ranking is confounded by batch noise;
  - the weight step clips the gradient norm at `grad_clip` (shared config, default 5, from the other
    NB201 scripts); SETN.py itself does not clip: pass `grad_clip=0` for its exact weight step;
  - no selection before the first epoch (the reference logs one from the untrained supernet).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxnas import cpu_kernels, estimate
from jaxnas.methods.base import SupernetMethod
from jaxnas.search import categorical_log_prob as log_prob  # setn.log_prob: alpha's view (experiments/abs)
from jaxnas.search import categorical_sample, categorical_top_k
from jaxnas.spaces.arch import Weights
from jaxnas.spaces.base import has
from jaxnas.train import steps
from jaxnas.train.optim import adam_l2
from jaxnas.train.state import KEY_METHOD, KEY_SAMPLE, select_key, step_key

ALPHA_INIT_STEP = -2  # alpha's initial draw uses this "step", apart from training and selection
ARCH_STEP_S = 1.2     # the architecture step on top of a weight step, 2-core CPU at C=16, N=5 (estimate)


@functools.cache
def _all_archs(space) -> jax.Array:
    return jnp.asarray(space.enumerate())


def top_k(alpha, k: int, allowed=None, *, space):
    """The k architectures of highest log-probability among all of `space` (NB201: 15,625,
    int32[k, 6]) and their log-probabilities (float[k]), best first; ties keep enumeration (NB201
    index) order. `allowed` (bool like alpha, a space state's ops): only architectures using
    allowed ops, k capped at their number (`jaxnas.search.categorical_top_k`)."""
    return categorical_top_k(jnp.asarray(alpha, jnp.float32), _all_archs(space), k, allowed)


_softmax_vjp = cpu_kernels.jit(lambda alpha: jax.vjp(lambda a: jax.nn.softmax(a, axis=-1), alpha))
_pull = cpu_kernels.jit(lambda pullback, g: pullback(g)[0])


class SETN(SupernetMethod):
    name = "setn"
    uses_arch_batch = True

    def __init__(self, cfg, space, num_classes: int):
        missing = [c for c in ("relaxed_spec", "enumerate", "size") if not has(space, c)]
        if missing:
            raise ValueError(f"setn needs a space with {', '.join(missing)} (its evaluator is a relaxed form "
                             f"over an enumerable space); {space.name} lacks them")
        super().__init__(cfg, space, num_classes)
        self.arch_tx = adam_l2(cfg.setn.arch_lr, cfg.setn.arch_beta1, cfg.setn.arch_beta2,
                               cfg.setn.arch_weight_decay)
        self._jitted_arch_update = jax.jit(self._arch_update, donate_argnums=0)  # for host steps

    @classmethod
    def estimate_seconds(cls, cfg, n_train: int) -> float:
        """Weight and architecture steps, and a selection after every epoch and at the end."""
        return estimate.supernet_seconds(cfg, n_train, cls.split, ARCH_STEP_S, cfg.train.epochs + 1)

    def init(self):
        """Shared weights as every supernet method; alpha = 1e-3 * N(0, 1) from the seed; its Adam state."""
        state = super().init()
        key = step_key(state.replace(step=jnp.int32(ALPHA_INIT_STEP)), KEY_METHOD)
        alpha = 1e-3 * jax.random.normal(key, self.space.relaxed_spec.shape, jnp.float32)
        return state.replace(method={"alpha": alpha, "alpha_opt": self.arch_tx.init(alpha)})

    # --- the two updates of a step -----------------------------------------------------------
    def arch_step(self, state, images, labels):
        """One Adam step of alpha on a batch, the network mixing every edge's ops by softmax(alpha).
        Only alpha moves; the BatchNorm statistics of the forward are kept (see the module doc)."""
        weights, softmax_pullback = _softmax_vjp(state.method["alpha"])
        (loss, (acc, stats)), grad_w = steps.loss_and_grads(self.graphdef, state.params, state.stats, images,
                                                            labels, Weights(weights), wrt="arch",
                                                            host=self.host)
        update = self._arch_update if self.host is None else self._jitted_arch_update
        return update(state, _pull(softmax_pullback, grad_w.value), stats), {"arch_loss": loss,
                                                                             "arch_acc": acc}

    def _arch_update(self, state, grads, stats):
        alpha, opt = state.method["alpha"], state.method["alpha_opt"]
        updates, opt = self.arch_tx.update(grads, opt, alpha)
        return state.replace(method={"alpha": optax.apply_updates(alpha, updates), "alpha_opt": opt},
                             stats=stats)

    def train_step(self, state, wbatch, abatch, lr):
        arch = self.space.sample(step_key(state, KEY_SAMPLE), 1, state.space)[0]
        state, wmetrics = self.weight_step(state, *wbatch, arch, lr)
        state, ametrics = self.arch_step(state, *abatch)
        return state, {**wmetrics, **ametrics}

    # --- selection ---------------------------------------------------------------------------
    def candidates(self, state) -> np.ndarray:
        """The `select_num` candidates: top log-probability (topk) or drawn from alpha (sample),
        among the architectures the space state allows."""
        alpha, allowed = state.method["alpha"], state.space["ops"]
        k = min(self.cfg.eval.select_num, self.space.size)
        if self.cfg.setn.select == "sample":
            return np.asarray(categorical_sample(select_key(state), alpha, k, allowed))
        return np.asarray(top_k(alpha, k, allowed, space=self.space)[0])

    def select(self, state, evaluator) -> dict:
        """The most accurate candidate on the validation batch (base `pick_best`), with alpha's view."""
        archs = self.candidates(state)
        best = self.pick_best(state, archs, evaluator)
        alpha = state.method["alpha"]
        best["log_prob"] = float(log_prob(alpha, jnp.asarray(best["arch"])))
        best["arch_probs"] = np.asarray(jax.nn.softmax(alpha, axis=-1)).round(6).tolist()
        return best

    def epoch_end(self, state, evaluator):
        best = self.select(state, evaluator)
        return state, {"selected_arch": self.space.to_string(best["arch"]),
                       "selected_valid_acc": best["valid_acc"],
                       "selected_valid_loss": best["valid_loss"]}
