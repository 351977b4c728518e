"""PGNAS: posterior-guided sampling of (architecture, weights) pairs (Zhou et al., AAAI 2020, arXiv
1906.09557), on NB201 at the operation level.

Training (paper Eq. 14-16, supplement 1.1): every op of every edge (skip, conv 1x1, conv 3x3, avg
pool) sits behind a concrete-dropout gate with a learned drop probability p = sigmoid(p_logit), one
per (edge, op) shared across the cells; each example draws its own relaxed drop value (tau 0.2) and
the op's input is scaled by 1 - drop (`jaxnas.nn.concrete`, after the reference layer
Conv2d_with_CD); the ops' outputs are summed (`InputGates`). Weights and drop logits take one SGD
step together on cross-entropy + the regulariser (l^2/N) sum (1-p)|w|^2 + (k/N) sum [p log p +
(1-p) log(1-p)]; weight decay is off (the paper replaces it by the l^2 term).

Selection (Algorithm 1): `pgnas.candidates` keep-masks 1 - floor(u + p), u drawn once per candidate,
are evaluated with the shared weights, without fine-tuning, on a held-out batch of the search split
(never the test split), and the most accurate pair wins. A dropped op sees a zero input, so with
batch-statistics BatchNorm (`eval.bn=batch`, the default) a candidate is exactly its sub-network;
with running statistics a dropped conv still adds BatchNorm's shift, as in the reference layer.
The fixed-rate dropout baseline of the paper's Table 3 samples as many candidates with one
constant p, the mean learned p.

Adaptation to NB201, on purpose: the paper gates the channels of parametrised operations only; here
the parameter-free ops (skip, pool) are gated too, so `none` is every gate of an edge off, and their
groups carry the entropy term (k = their input channels) but no weight term. A candidate maps to an
NB201 genotype directly when each edge keeps at most one op; otherwise `pgnas.genotype` decides:
"projection" keeps, per edge, the kept op of highest keep probability; "rejection" picks the best
candidate among those that keep at most one op per edge. The result records which, and how many
candidates were one-op-per-edge.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxnas.methods.base import SupernetMethod
from jaxnas.nn import apply, concrete, loss_and_accuracy
from jaxnas.spaces.arch import InputGates
from jaxnas.spaces.nb201 import cell as nb
from jaxnas.train import optim, steps
from jaxnas.train.state import KEY_SAMPLE, select_key, step_key

GATED_OPS = (nb.SKIP, nb.CONV1, nb.CONV3, nb.POOL)  # the columns of p_logit, in NB201's op order
HIST_BINS = np.linspace(0.0, 100.0, 21)  # candidate accuracy histograms, percent


def gate_values(keep, p_logit, rescale: bool):
    """InputGates values [..., 6, 5] from keep values [..., 6, 4] (1 - drop, relaxed or 0/1): the
    `none` column is 0; with `rescale`, Gal's 1/(1-p)."""
    g = concrete.apply_gate(jnp.ones_like(keep), 1.0 - keep, p_logit if rescale else None)
    return jnp.concatenate([jnp.zeros(g.shape[:-1] + (1,), g.dtype), g], -1)


def to_genotype(keep, keep_prob) -> np.ndarray:
    """int32[6]: per edge the kept op of highest keep probability, `none` where nothing is kept
    (keep: 0/1 [6, 4]; keep_prob: [6, 4])."""
    score = np.where(np.asarray(keep) > 0, np.asarray(keep_prob), -np.inf)
    best = np.argmax(score, -1)
    return np.where(np.isfinite(score.max(-1)), np.asarray(GATED_OPS)[best], nb.NONE).astype(np.int32)


def _summary(acc) -> dict:
    acc = np.asarray(acc, np.float64)
    return {"mean": float(acc.mean()), "std": float(acc.std()), "max": float(acc.max()),
            "histogram": np.histogram(acc, HIST_BINS)[0].tolist(), "bins": HIST_BINS.tolist(),
            "values": np.round(acc, 3).tolist()}


class PGNAS(SupernetMethod):
    name = "pgnas"
    needs_dataset = True  # the effective training-set size N defaults to 10x the weights' images

    def __init__(self, cfg, space, num_classes: int, *, dataset):
        if space.name != "nb201":
            raise ValueError(f"pgnas gates NB201's operations; space {space.name!r} is not supported yet")
        super().__init__(cfg, space, num_classes)
        self.host, self.host_step = None, False  # the gated forward is one traced program on every backend
        c = cfg.pgnas
        self.tx = optim.sgd(cfg.train.lr, cfg.train.momentum, cfg.train.nesterov, 0.0)  # no weight decay
        n_weights = len(dataset.train_labels) // (2 if self.split == "search" else 1)
        self.n_train = c.n_train or 10.0 * n_weights
        # entropy term's k per (edge, op): the input channels the gate drops, summed over the cells
        # that share the gate
        channels = [cell["edges"][0]["conv1"]["conv"]["kernel"].shape[2] for cell in self._search_cells(self._params)]
        self.k = float(sum(channels))

    @staticmethod
    def _search_cells(params):
        return [cell for cell in params["cells"].values() if "edges" in cell]

    def _weights_sq(self, params):
        """|w|^2 per (edge, gated op) [6, 4], summed over the cells: conv kernels; skip/pool 0."""
        cells = self._search_cells(params)
        rows = []
        for e in range(nb.NUM_EDGES):
            conv = {op: sum(jnp.sum(c["edges"][e][name]["conv"]["kernel"] ** 2) for c in cells)
                    for op, name in ((nb.CONV1, "conv1"), (nb.CONV3, "conv3"))}
            rows.append(jnp.stack([conv.get(op, jnp.float32(0.0)) for op in GATED_OPS]))
        return jnp.stack(rows)

    def init(self):
        state = super().init()
        p_logit = concrete.init_logit((nb.NUM_EDGES, len(GATED_OPS)), self.cfg.pgnas.p_init)
        return state.replace(method={"p_logit": p_logit},
                             opt_state=self.tx.init({"params": state.params, "p_logit": p_logit}))

    def regulariser(self, params, p_logit):
        return concrete.regulariser(p_logit, self._weights_sq(params), self.k, self.cfg.pgnas.length_scale_sq,
                                    self.n_train)

    def train_step(self, state, wbatch, abatch, lr):
        images, labels = wbatch
        key, c = step_key(state, KEY_SAMPLE), self.cfg.pgnas

        def loss_fn(joint):
            p_logit = joint["p_logit"]
            drop = concrete.sample_relaxed_drop(key, p_logit, (images.shape[0],) + p_logit.shape, c.tau)
            gates = gate_values(1.0 - drop, p_logit, c.rescale)
            logits, stats = apply(self.graphdef, joint["params"], state.stats, images, InputGates(gates), train=True)
            ce, acc = loss_and_accuracy(logits, labels)
            reg = self.regulariser(joint["params"], p_logit)
            return ce + reg, (ce, acc, reg, stats)

        joint = {"params": state.params, "p_logit": state.method["p_logit"]}
        (loss, (ce, acc, reg, stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(joint)
        joint, opt, gnorm = steps.update(self.tx, self.cfg.train.grad_clip, joint, state.opt_state, grads, lr)
        state = state.replace(params=joint["params"], stats=stats, opt_state=opt,
                              method={**state.method, "p_logit": joint["p_logit"]})
        return state, {"loss": loss, "ce": ce, "acc": acc, "regulariser": reg, "grad_norm": gnorm,
                       "mean_drop_p": jnp.mean(jax.nn.sigmoid(joint["p_logit"]))}

    def epoch_end(self, state, evaluator):
        return state, {"drop_p": np.round(np.asarray(jax.nn.sigmoid(state.method["p_logit"])), 4).tolist()}

    # --- selection ---------------------------------------------------------------------------
    def _evaluate(self, state, keep, p_logit, evaluator):
        gates = gate_values(jnp.asarray(keep, jnp.float32), p_logit, self.cfg.pgnas.rescale)
        res = jax.device_get(self.rank(state, InputGates(gates), evaluator))
        return 100 * np.asarray(res["acc"], np.float64), np.asarray(res["loss"], np.float64)

    def select(self, state, evaluator) -> dict:
        c, p_logit = self.cfg.pgnas, state.method["p_logit"]
        key_pg, key_fixed = jax.random.split(select_key(state))
        keep = np.asarray(concrete.sample_candidate_masks(key_pg, p_logit, c.candidates))  # [C, 6, 4]
        acc, loss = self._evaluate(state, keep, p_logit, evaluator)
        mean_p = float(jnp.mean(jax.nn.sigmoid(p_logit)))
        fixed_logit = jnp.full_like(p_logit, math.log(mean_p) - math.log1p(-mean_p))
        keep_fixed = np.asarray(concrete.sample_candidate_masks(key_fixed, fixed_logit, c.candidates))
        acc_fixed, _ = self._evaluate(state, keep_fixed, fixed_logit, evaluator)

        single = (keep.sum(-1) <= 1).all(-1)  # candidates that are NB201 genotypes as they are
        order = np.lexsort((np.arange(len(acc)), loss, -acc))
        if c.genotype == "rejection":
            order = order[single[order]]
            if not len(order):
                raise ValueError(f"pgnas.genotype=rejection: none of the {c.candidates} candidates keeps at most one "
                                 "op per edge; use pgnas.genotype=projection or more candidates")
        best = int(order[0])
        keep_prob = np.asarray(jax.nn.sigmoid(-p_logit))
        return {"arch": to_genotype(keep[best], keep_prob), "valid_acc": float(acc[best]),
                "valid_loss": float(loss[best]), "mask": keep[best].astype(int).tolist(),
                "mask_ops": [nb.OPS[op] for op in GATED_OPS], "genotype_mapping": c.genotype,
                "exact_genotype": bool(single[best]), "one_op_per_edge_candidates": int(single.sum()),
                "candidates_n": c.candidates, "drop_p": np.round(1.0 - keep_prob, 4).tolist(),
                "candidates_acc": _summary(acc), "fixed_rate_acc": {"p": mean_p, **_summary(acc_fixed)}}
