"""ABS: angle-based search-space shrinking (Hu et al., ECCV 2020, arXiv 2004.13431), a wrapper
around any supernet method.

The base method (`abs.base`: rsps, setn) trains as it always does; at the end of chosen epochs ABS
scores every operator still in the space and drops the lowest, and the base method goes on in
the shrunk space, which its sampling, SETN's top-K and the final selection all respect (the
space state `{"ops": bool[6, 5]}`: a fixed-shape mask, so checkpoints and compiled steps stay
valid). It wraps by composition: the base method sees its own method state only.

Operator score (`abs.metric`):
  - "angle" (the paper): the mean, over the architectures still in the space that contain the
    operator, of arccos cos(theta0_a, theta_a) between the architecture's initial and current
    weight vectors (the space's `angles`; NB201: `jaxnas.spaces.nb201.angle`, following
    AngleNAS NAS-Bench-201/exps/angle/weight_angle.py). theta0 is the supernet's exact initial
    weights, kept in the method state (checkpointed, so resume is exact);
  - "acc": the paper's accuracy baseline (exps/angle/dropnode_by_acc.py): mean shared-weight
    validation accuracy of `abs.acc_archs` seeded architectures of the space (the reference uses
    all, after BN recalibration: set `eval.bn=recal` for that);
  - "magnitude": the paper's magnitude baseline (exps/angle/dropnode_by_magnitude.py): SETN's
    softmax(alpha) of the operator (needs `abs.base=setn`).

Schedules (`abs.schedule`):
  - "oneshot" (the NB201 study, exps/angle/dropnode_by_angle.py): after `shrink_after` epochs
    (default: half of the run's) drop `drop_num` (20) of the 30 (edge, op) pairs, once;
  - "progressive" (the ImageNet code, SPOS/shrinking/shrinking.py): from `shrink_after` on, every
    `stage_epochs` epochs drop `per_stage` operators, while more than `min_size` architectures
    remain; theta0 is replaced by the current weights once, when more than `reset_after`
    operators have been dropped (0: never).
Dropping follows the reference's `drop_operators`: operators in ascending score order, each
dropped unless it is the last of its edge; ties in (edge, op) order.

Deviation: the reference trains its NB201 supernet with a "dropnode" sampler (a node whose inputs
are all `none` is resampled); here the base method samples as it does on its own.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxnas.methods.base import Method
from jaxnas.methods.rsps import RSPS
from jaxnas.methods.setn import SETN
from jaxnas.spaces.base import has

BASES = {"rsps": RSPS, "setn": SETN}
ACC_ARCHS_SEED = 20200  # the accuracy metric's fixed architecture sample (apart from the run's seed)


def option_scores(values, archs, num_options: int):
    """float64[D, num_options]: the mean of `values` [K] over the architectures `archs` int[K, D]
    whose decision d takes option o; NaN where none does."""
    archs, values = np.asarray(archs), np.asarray(values, np.float64)
    has_op = archs[..., None] == np.arange(num_options)  # [K, D, O]
    count = has_op.sum(0)
    total = np.einsum("k,kdo->do", values, has_op)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / count, np.nan)


def drop_lowest(scores, allowed, n: int):
    """(new allowed mask, dropped [(decision, option), ...]): up to `n` allowed options dropped in
    ascending score order, never the last one of a decision. NaN scores (unmeasured) sort last."""
    allowed = np.array(allowed, bool)
    keyed = np.where(np.isnan(scores), np.inf, scores).ravel()
    dropped = []
    for flat in np.argsort(keyed, kind="stable"):
        if len(dropped) == n:
            break
        d, o = divmod(int(flat), allowed.shape[1])
        if allowed[d, o] and allowed[d].sum() > 1:
            allowed[d, o] = False
            dropped.append((d, o))
    return allowed, dropped


def _listed(scores):
    """Scores as nested lists for JSON: None where unmeasured (NaN)."""
    return [[round(float(v), 6) if np.isfinite(v) else None for v in row] for row in np.asarray(scores,
                                                                                                np.float64)]


class ABS(Method):
    name = "abs"

    @classmethod
    def check(cls, cfg, space) -> None:
        super().check(cfg, space)
        for capability in ("enumerate", "init_state", "allows"):
            if not has(space, capability):
                raise ValueError(f"abs needs a space with {capability}; {space.name} lacks it")
        if cfg.abs.metric == "angle" and not has(space, "angles"):
            raise ValueError(f"abs.metric=angle needs a space that defines weight angles; {space.name} does "
                             "not")
        if cfg.abs.metric == "magnitude" and cfg.abs.base != "setn":
            raise ValueError("abs.metric=magnitude scores operators by SETN's alpha: set abs.base=setn")
        BASES[cfg.abs.base].check(cfg, space)
        ops = space.init_state()["ops"]
        droppable = ops.size - ops.shape[0]  # every decision keeps one option
        if cfg.abs.schedule == "oneshot" and cfg.abs.drop_num > droppable:
            raise ValueError(f"abs.drop_num={cfg.abs.drop_num} exceeds the {droppable} droppable operators "
                             f"of {space.name} ({ops.size}, one kept per edge); at most {droppable} (which "
                             "leaves one architecture)")
        total = cfg.train.epochs * cfg.train.rounds
        if cfg.abs.shrink_after > total:
            raise ValueError(f"abs.shrink_after={cfg.abs.shrink_after} is beyond the run's {total} epochs, "
                             f"so the space would never shrink; at most {total} (0: half of the run's "
                             "epochs)")

    def __init__(self, cfg, space, num_classes: int):
        super().__init__(cfg, space, num_classes)
        self.check(cfg, space)
        self.base = BASES[cfg.abs.base](cfg, space, num_classes)
        self.split, self.uses_arch_batch = self.base.split, self.base.uses_arch_batch
        self.host_step = self.base.host_step
        self._all = np.asarray(space.enumerate())
        total = cfg.train.epochs * cfg.train.rounds
        self.shrink_after = cfg.abs.shrink_after or max(1, total // 2)  # 0: half of the run's epochs

    # --- the base method, on its own method state --------------------------------------------
    def _inner(self, state):
        return state.replace(method=state.method["base"])

    def _outer(self, state, inner):
        return inner.replace(method={**state.method, "base": inner.method})

    def init(self):
        inner = self.base.init()
        ops = inner.space["ops"]
        return inner.replace(method={
            "base": inner.method,
            "theta0": jax.tree.map(jnp.copy, inner.params),  # the exact initial weights
            "scores": jnp.zeros(ops.shape, jnp.float32),  # the last operator scores (finite: the loop
            "measured": jnp.zeros(ops.shape, bool),        # refuses to save NaN/inf) and which are real
            "dropped": jnp.int32(0),  # operators dropped so far
            "reset": jnp.bool_(False),  # theta0 replaced (progressive schedule)
        })

    def train_step(self, state, wbatch, abatch, lr):
        inner, metrics = self.base.train_step(self._inner(state), wbatch, abatch, lr)
        return self._outer(state, inner), metrics

    def rank(self, state, archs, evaluator):
        return self.base.rank(state, archs, evaluator)

    # --- shrinking ---------------------------------------------------------------------------
    def _due(self, epochs_done: int, state) -> int:
        """How many operators to drop at the end of this epoch (0: none)."""
        c, first = self.cfg.abs, self.shrink_after
        if epochs_done < first:
            return 0
        if c.schedule == "oneshot":
            return c.drop_num if epochs_done == first else 0
        if (epochs_done - first) % c.stage_epochs or self._size(state) <= c.min_size:
            return 0
        return c.per_stage

    def _size(self, state) -> int:
        return int(np.prod(np.asarray(state.space["ops"]).sum(-1)))

    def _allowed_archs(self, state) -> np.ndarray:
        return self._all[np.asarray(self.space.allows(self._all, state.space))]

    def scores(self, state, evaluator) -> np.ndarray:
        """float64[D, O]: the configured metric's score of every operator (NaN where unmeasured)."""
        metric, allowed = self.cfg.abs.metric, np.asarray(state.space["ops"])
        if metric == "magnitude":
            probs = np.asarray(jax.nn.softmax(state.method["base"]["alpha"], axis=-1), np.float64)
            return np.where(allowed, probs, np.nan)
        archs = self._allowed_archs(state)
        if metric == "angle":
            values = self.space.angles(state.method["theta0"], state.params, jnp.asarray(archs))
        else:  # acc: a seeded sample of the space's architectures, ranked with the shared weights
            n = min(self.cfg.abs.acc_archs, len(archs))
            archs = archs[np.sort(np.random.default_rng(ACC_ARCHS_SEED).choice(len(archs), n, replace=False))]
            values = self.rank(state, archs, evaluator)["acc"]
        return option_scores(jax.device_get(values), archs, allowed.shape[1])

    def epoch_end(self, state, evaluator):
        inner, metrics = self.base.epoch_end(self._inner(state), evaluator)
        state = self._outer(state, inner)
        n = self._due(int(state.epoch) + 1, state)
        if not n:
            return state, metrics
        scores = self.scores(state, evaluator)
        ops, dropped = drop_lowest(scores, state.space["ops"], n)
        total = int(state.method["dropped"]) + len(dropped)
        method = {**state.method, "scores": jnp.asarray(np.nan_to_num(scores, nan=0.0), jnp.float32),
                  "measured": jnp.asarray(~np.isnan(scores)), "dropped": jnp.int32(total)}
        reset = bool(self.cfg.abs.reset_after and not state.method["reset"]
                     and total > self.cfg.abs.reset_after)
        if reset:  # AngleNAS SPOS/shrinking: the reference weights become the current ones, once
            method.update(theta0=jax.tree.map(jnp.copy, state.params), reset=jnp.bool_(True))
        state = state.replace(method=method, space={**state.space, "ops": jnp.asarray(ops)})
        return state, {**metrics, "abs_op_scores": _listed(scores),
                       "abs_dropped": [[d, o] for d, o in dropped], "abs_space_size": self._size(state),
                       "abs_theta0_reset": reset}

    def select(self, state, evaluator) -> dict:
        """The base method's selection in the shrunk space, with the surviving operators
        (`kept_ops`, decision x option 0/1) and the last operator scores."""
        result = self.base.select(self._inner(state), evaluator)
        result.update(kept_ops=np.asarray(state.space["ops"]).astype(int).tolist(),
                      op_scores=_listed(np.where(state.method["measured"], state.method["scores"], np.nan)),
                      abs_metric=self.cfg.abs.metric, space_size=self._size(state))
        return result
