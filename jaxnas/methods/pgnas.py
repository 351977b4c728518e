"""PGNAS: posterior-guided sampling of (architecture, weights) pairs (Zhou et al., AAAI 2020, arXiv
1906.09557), on the paper's hybrid multi-kernel network (`--space hybrid`, channel level, the paper's
construction) and on NB201 at the operation level (an adaptation that NB201's ground truth can judge).

Hybrid (`ChannelGates`): one drop probability per (layer, kernel branch), a drop value per (example,
input channel) in training, a candidate is a keep-mask over every branch's input channels, i.e. a
pruned sub-network with inherited weights; the result gives its params, FLOPs and the fraction of
channels dropped per kernel size (paper Table 7), for the best candidate, all candidates and the
fixed-rate baseline. `jaxnas train --space hybrid --arch <result's arch>` retrains it from scratch.

NB201 (`OperationGates`), training (paper Eq. 14-16, supplement 1.1): every op of every edge (skip, conv 1x1,
conv 3x3, avg pool) sits behind a concrete-dropout gate with a learned drop probability p = sigmoid(p_logit),
one per (edge, op) shared across the cells (`pgnas.per_cell`: one per cell and (edge, op), the paper's
per-layer groups; a candidate's genotype is then, per edge, the op kept in the most cells); each example draws
its own relaxed drop value (tau 0.2) and the op's input is scaled by 1 - drop (`jaxnas.search.concrete`,
after the reference layer Conv2d_with_CD); the ops' outputs are summed (`InputGates`). Weights and drop logits
take one SGD step together on cross-entropy + the regulariser (l^2/N) sum (1-p)|w|^2 + (k/N) sum [p log p +
(1-p) log(1-p)]; weight decay is off (the paper replaces it by the l^2 term).

Selection (Algorithm 1): `pgnas.candidates` keep-masks 1 - floor(u + p), u drawn once per candidate,
are evaluated with the shared weights, without fine-tuning, on a held-out batch of the search split
(never the test split), and the most accurate pair wins. A dropped op sees a zero input, so with
batch-statistics BatchNorm (`eval.bn=batch`, the default) a candidate is exactly its sub-network;
with running statistics a dropped conv still adds BatchNorm's shift, as in the reference layer.
The fixed-rate dropout baseline of the paper's Table 3 samples as many candidates with one
constant p, the mean learned p. The evaluations go in blocks dispatched from Python
(`Evaluator.in_blocks`, bit-identical to one call): a progress bar, and Ctrl-C acting within
seconds; `PGNAS.estimate_seconds` is the run's cost model for `--print-config`.

Adaptation to NB201, on purpose: the paper gates the channels of parametrised operations only; here
the parameter-free ops (skip, pool) are gated too, so `none` is every gate of an edge off, and their
groups carry the entropy term (k = their input channels) but no weight term. A candidate maps to an
NB201 genotype directly when each edge keeps at most one op; otherwise `pgnas.genotype` decides:
"projection" keeps, per edge, the kept op of highest keep probability; "rejection" evaluates
`pgnas.candidates` more candidates that keep at most one op per edge, drawn exactly from the
posterior conditioned on that event (`one_op_probs`: per edge, `none` and each single op in
proportion to their probability under the independent gates; with `per_cell`, the same op in
every cell), which is the distribution rejection sampling of ordinary candidates converges to,
though with drop probabilities near 0.1 hardly one in 10^15 of those qualifies; the best of them
wins (result: `rejection`, with their accuracies; the ordinary pool and its histograms are kept
as they are); "ranked" (jaxnas's, not the paper's) draws per candidate and edge one of its kept
ops uniformly and ranks those single paths by their held-out accuracy with the shared weights,
since projection favours the parameter-free ops whose drop probability the l^2 term leaves low.
The result records which, and how many candidates of the ordinary pool were one-op-per-edge. On
the hybrid network every candidate is a pruned network: `pgnas.genotype` does not apply.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxnas import search, spaces
from jaxnas.config import preset
from jaxnas.data.pipeline import weights_size
from jaxnas.estimate import search_steps
from jaxnas.methods.base import SupernetMethod
from jaxnas.nn import apply, loss_and_accuracy
from jaxnas.search import concrete
from jaxnas.spaces.arch import InputGates
from jaxnas.spaces.nb201 import cell as nb
from jaxnas.train import optim, steps
from jaxnas.train.state import KEY_SAMPLE, select_key, step_key

GATED_OPS = (nb.SKIP, nb.CONV1, nb.CONV3, nb.POOL)  # the columns of p_logit, in NB201's op order
HIST_BINS = np.linspace(0.0, 100.0, 21)  # candidate accuracy histograms, percent

# Cost model (`PGNAS.estimate_seconds`, and the evaluation blocks' size), measured on the 2-core
# development VM with the `tiny` preset (nb201: C=8, N=1, genotype=ranked; hybrid: hybrid.C=8, 1
# block per stage; batch 64, 230 steps, 100 candidates, 256 validation images), the fastest of
# three timed runs each (benchmarks/BENCHMARKS.md section 13): 138 s / 88 s in all, steady steps
# 0.243 / 0.173 s, a gated candidate 0.239 / 0.174 s, 98 ranked genotypes 7.0 s with their compile,
# the rest (the step's compile 18 / 5 s, start-up, checkpoints) ~27 / ~13 s. Scaled by the
# network's size relative to the tiny one and by the images per step / per evaluation. Each gate
# layout holds its own: STEP_S (one training step, every gate on, traced), CANDIDATE_S (one
# candidate's gated evaluation, 256 images), FIXED_S (compiling, start-up, checkpoints).
SINGLE_S = 0.05                                # one ranked genotype's single-path evaluation (nb201)
EVAL_BLOCK_S = 2.0                             # candidates evaluated in blocks of about this


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


def one_op_probs(p_logit) -> np.ndarray:
    """float64 [6, 5]: per edge, the probability of each op (columns in NB201's op order: none,
    skip, conv 1x1, conv 3x3, pool) under the posterior conditioned on at most one kept op per edge
    (p_logit [6, 4]), and with per-cell gates (p_logit [3N, 6, 4]) on the same op in every cell.

    The gates are independent, so the condition factorises per edge: P(none kept) is prod_j p_j and
    P(only op i kept) is (1 - p_i) prod_{j != i} p_j, i.e. exp(-p_logit_i) times the former; per
    cell the same, and the same choice c in every cell has weight prod_cells P_cell(c). Exactly the
    distribution rejection sampling of one-op-per-edge candidates converges to."""
    z = np.asarray(p_logit, np.float64)
    z = z.sum(0) if z.ndim == 3 else z  # per cell: the cells' likelihood ratios multiply
    logits = np.concatenate([np.zeros(z.shape[:-1] + (1,)), -z], -1)
    w = np.exp(logits - logits.max(-1, keepdims=True))
    return w / w.sum(-1, keepdims=True)


def sample_one_op(key, p_logit, num: int) -> np.ndarray:
    """int32[num, 6]: `num` genotypes drawn from `one_op_probs`, edges independent (inverse CDF
    of one uniform per genotype and edge, drawn from `key`)."""
    cdf = np.cumsum(one_op_probs(p_logit), -1)
    u = np.asarray(jax.random.uniform(key, (num, nb.NUM_EDGES)), np.float64)
    return np.asarray([nb.NONE, *GATED_OPS], np.int32)[(u[..., None] >= cdf[:, :-1]).sum(-1)]


def _summary(acc) -> dict:
    acc = np.asarray(acc, np.float64)
    return {"mean": float(acc.mean()), "std": float(acc.std()), "max": float(acc.max()),
            "histogram": np.histogram(acc, HIST_BINS)[0].tolist(), "bins": HIST_BINS.tolist(),
            "values": np.round(acc, 3).tolist()}


def relative_size(cfg) -> float:
    """A network's cost relative to the `tiny` preset's, which the constants were measured on."""
    space = spaces.get(cfg.space, cfg)
    return space.relative_cost(cfg) / space.relative_cost(preset("tiny", "pgnas", cfg.space))


def candidate_seconds(cfg, single: bool = False) -> float:
    """Seconds to evaluate one candidate (gated), or with `single` one ranked genotype."""
    per = SINGLE_S if single else LAYOUTS[cfg.space].CANDIDATE_S
    return per * relative_size(cfg) * cfg.eval.batch_size / 256


class OperationGates:
    """NB201 at the operation level: p_logit [6, 4] (edge, op: skip, conv 1x1, conv 3x3, pool),
    shared across the cells, or [3N, 6, 4] with `pgnas.per_cell` (one per cell, the paper's
    per-layer groups); a candidate is a keep-mask of that shape, mapped to a genotype."""

    valid = 1.0  # every gate is real
    genotypes = True  # a candidate maps to a genotype (`pgnas.genotype`)
    STEP_S, CANDIDATE_S, FIXED_S = 0.24, 0.24, 30.0

    def __init__(self, params, space, per_cell: bool = False):
        self.space, self.per_cell = space, per_cell
        channels = np.array([cell["edges"][0]["conv1"]["conv"]["kernel"].shape[2]
                             for cell in self._cells(params)])
        self.shape = ((len(channels),) if per_cell else ()) + (nb.NUM_EDGES, len(GATED_OPS))
        # the entropy term's k per gate: the input channels it drops, summed over the cells sharing it
        self.k = channels[:, None, None].astype(np.float32) if per_cell else float(channels.sum())

    @staticmethod
    def _cells(params):
        return [cell for cell in params["cells"].values() if "edges" in cell]

    def noise_shape(self, batch):
        return (batch, *self.shape)

    def expand(self, p_logit):
        return p_logit

    def gates(self, keep, p_logit, rescale):
        return gate_values(keep, p_logit, rescale)

    def weights_sq(self, params):
        """|w|^2 per (edge, gated op) [6, 4], summed over the cells ([3N, 6, 4] per cell with
        `per_cell`): conv kernels; skip/pool 0."""
        def one(cells):
            rows = []
            for e in range(nb.NUM_EDGES):
                conv = {op: sum(jnp.sum(c["edges"][e][name]["conv"]["kernel"] ** 2) for c in cells)
                        for op, name in ((nb.CONV1, "conv1"), (nb.CONV3, "conv3"))}
                rows.append(jnp.stack([conv.get(op, jnp.float32(0.0)) for op in GATED_OPS]))
            return jnp.stack(rows)
        cells = self._cells(params)
        return jnp.stack([one([c]) for c in cells]) if self.per_cell else one(cells)

    def extras(self, keep, p_logit) -> dict:
        return {"mask_ops": [nb.OPS[op] for op in GATED_OPS], "per_cell": self.per_cell,
                "one_op_per_edge_candidates": int(self.exact(keep).sum())}

    def exact(self, keep):
        """Candidates that are NB201 genotypes as they are: at most one kept op per edge (and, per
        cell, the same in every cell)."""
        keep = np.asarray(keep)
        single = (keep.sum(-1) <= 1).all(-1)
        if not self.per_cell:
            return single
        return single.all(-1) & (keep == keep[..., :1, :, :]).all((-3, -2, -1))

    def project(self, keep, keep_prob) -> np.ndarray:
        """One candidate's genotype: per edge the kept op of highest keep probability; per cell, the
        op kept in the most cells (ties: the higher mean keep probability)."""
        if not self.per_cell:
            return to_genotype(keep, keep_prob)
        count = np.asarray(keep).sum(0)
        return to_genotype(count > 0, count + np.asarray(keep_prob).mean(0))

    def any_cell(self, keep) -> np.ndarray:
        """[..., 6, 4]: the ops a candidate keeps (in at least one cell, per cell)."""
        return np.asarray(keep).max(-3) if self.per_cell else np.asarray(keep)

    def one_op_draw(self, key, p_logit, num):
        """`num` genotypes int32[num, 6] drawn from `one_op_probs`, and their keep-masks (the
        candidates' form: [num, 6, 4], the same in every cell with `per_cell`)."""
        archs = sample_one_op(key, p_logit, num)
        keep = (archs[..., None] == np.asarray(GATED_OPS)).astype(np.float32)
        if self.per_cell:
            keep = np.broadcast_to(keep[:, None], (num, *self.shape)).copy()
        return archs, keep


class ChannelGates:
    """The hybrid network at the channel level (the paper's construction): p_logit [L, S], one per
    (layer, kernel branch), expanded over the branch's input channels; a candidate's keep-mask
    [L, S, 4C] is its architecture."""

    genotypes = False  # every candidate is a pruned network: `pgnas.genotype` does not apply
    STEP_S, CANDIDATE_S, FIXED_S = 0.17, 0.17, 15.0

    def __init__(self, params, space, per_cell: bool = False):  # per_cell: the groups are per layer already
        self.space, self.shape = space, space.valid.shape[:2]
        self.valid = jnp.asarray(space.valid, jnp.float32)
        self.k = np.array([[cin] for cin, _, _ in space.layers], np.float32)  # [L, 1]: the layer's inputs

    def noise_shape(self, batch):
        return (batch, *self.valid.shape)

    def expand(self, p_logit):
        return jnp.broadcast_to(p_logit[..., None], p_logit.shape + self.valid.shape[-1:])

    def gates(self, keep, p_logit, rescale):
        g = concrete.apply_gate(jnp.ones_like(keep), 1.0 - keep, self.expand(p_logit) if rescale else None)
        return g * self.valid

    def weights_sq(self, params):
        """|w|^2 per (layer, branch) [L, S]."""
        rows = []
        for i in range(len(params["blocks"])):
            for conv in ("conv_a", "conv_b"):
                kernels = params["blocks"][i][conv]["kernels"]
                rows.append(jnp.stack([jnp.sum(kernels[s] ** 2) for s in range(self.shape[1])]))
        return jnp.stack(rows)

    def extras(self, keep, p_logit) -> dict:
        return {}

    def exact(self, keep):
        return np.ones(np.asarray(keep).shape[:-3], bool)

    def result(self, keep, best, keep_fixed) -> dict:
        """The best candidate as the result's architecture, with its cost and sparsity (paper
        Table 7), and the sparsity of the candidates and the fixed-rate baseline's."""
        space, arch = self.space, keep[best].astype(bool)
        cost = jax.device_get(space.cost(jnp.asarray(arch)))
        full = jax.device_get(space.cost(jnp.asarray(space.valid)))
        return {"arch": arch, "params": int(cost["params"]), "flops": int(cost["flops"]),
                "full_params": int(full["params"]), "full_flops": int(full["flops"]),
                "sparsity": space.sparsity(arch), "candidates_sparsity": space.sparsity(keep.astype(bool)),
                "fixed_rate_sparsity": space.sparsity(keep_fixed.astype(bool))}


LAYOUTS = {"nb201": OperationGates, "hybrid": ChannelGates}  # the spaces PGNAS is adapted to


class PGNAS(SupernetMethod):
    name = "pgnas"
    needs_dataset = True  # the effective training-set size N defaults to 10x the weights' images

    @classmethod
    def check(cls, cfg, space) -> None:
        super().check(cfg, space)
        if space.name not in LAYOUTS:
            raise ValueError(f"pgnas gates the spaces {', '.join(LAYOUTS)}; space {space.name!r} is not "
                             "supported")

    def __init__(self, cfg, space, num_classes: int, *, dataset):
        self.check(cfg, space)
        super().__init__(cfg, space, num_classes)
        self.host, self.host_step = None, False  # the gated forward is one traced program on every backend
        c = cfg.pgnas
        self.tx = optim.sgd(cfg.train.lr, cfg.train.momentum, cfg.train.nesterov, 0.0)  # no weight decay
        n_weights = weights_size(len(dataset.train_labels), cfg.train.held_out)  # the weights part
        self.n_train = c.n_train or 10.0 * n_weights
        self.gates = LAYOUTS[space.name](self._params, space, c.per_cell)

    @classmethod
    def estimate_seconds(cls, cfg, n_train: int) -> float:
        """A run's seconds on a 2-core CPU (`jaxnas.estimate`): the gated steps, then 2 x
        `pgnas.candidates` gated evaluations (the pairs and the fixed-rate baseline), on NB201 one
        more set of candidates for genotype=rejection or up to as many single paths for ranked."""
        c, layout = cfg.pgnas, LAYOUTS[cfg.space]
        step = layout.STEP_S * relative_size(cfg) * cfg.train.batch_size / 64
        gated = 2 + (layout.genotypes and c.genotype == "rejection")
        select = gated * c.candidates * candidate_seconds(cfg)
        if layout.genotypes and c.genotype == "ranked":
            select += c.candidates * candidate_seconds(cfg, single=True)
        return layout.FIXED_S + search_steps(cfg, n_train, cls.split) * step + select

    def init(self):
        state = super().init()
        p_logit = concrete.init_logit(self.gates.shape, self.cfg.pgnas.p_init)
        return state.replace(method={"p_logit": p_logit},
                             opt_state=self.tx.init({"params": state.params, "p_logit": p_logit}))

    def regulariser(self, params, p_logit):
        return concrete.regulariser(p_logit, self.gates.weights_sq(params), self.gates.k,
                                    self.cfg.pgnas.length_scale_sq, self.n_train)

    def train_step(self, state, wbatch, abatch, lr):
        images, labels = wbatch
        key, c = step_key(state, KEY_SAMPLE), self.cfg.pgnas

        def loss_fn(joint):
            p_logit = joint["p_logit"]
            drop = concrete.sample_relaxed_drop(key, self.gates.expand(p_logit),
                                                self.gates.noise_shape(images.shape[0]), c.tau)
            gates = self.gates.gates(1.0 - drop, p_logit, c.rescale)
            logits, stats = apply(self.graphdef, joint["params"], state.stats, images, InputGates(gates),
                                  train=True)
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
    def _evaluate(self, state, keep, p_logit, evaluator, desc):
        gates = self.gates.gates(jnp.asarray(keep, jnp.float32), p_logit, self.cfg.pgnas.rescale)
        res = jax.device_get(self.rank(state, InputGates(gates), self._blocks(evaluator, desc)))
        return 100 * np.asarray(res["acc"], np.float64), np.asarray(res["loss"], np.float64)

    def _blocks(self, evaluator, desc, single=False):
        """`evaluator` dispatching blocks of about EVAL_BLOCK_S of candidates by the cost model, so
        that a progress bar moves and Ctrl-C acts within seconds (results bit-identical)."""
        return evaluator.in_blocks(desc, max(1, round(EVAL_BLOCK_S / candidate_seconds(self.cfg, single))))

    def _candidates(self, key, p_logit, num):
        keep = concrete.sample_candidate_masks(key, self.gates.expand(p_logit), num)
        return np.asarray(keep * self.gates.valid)

    def select(self, state, evaluator) -> dict:
        c, p_logit = self.cfg.pgnas, state.method["p_logit"]
        key_pg, key_fixed, key_map = jax.random.split(select_key(state), 3)
        keep = self._candidates(key_pg, p_logit, c.candidates)
        acc, loss = self._evaluate(state, keep, p_logit, evaluator, "pgnas candidates")
        mean_p = float(jnp.mean(jax.nn.sigmoid(p_logit)))
        fixed_logit = jnp.full_like(p_logit, math.log(mean_p) - math.log1p(-mean_p))
        keep_fixed = self._candidates(key_fixed, fixed_logit, c.candidates)
        acc_fixed, _ = self._evaluate(state, keep_fixed, fixed_logit, evaluator,
                                      "pgnas fixed-rate candidates")

        exact = self.gates.exact(keep)
        best = search.best(acc, loss)
        out = {"valid_acc": float(acc[best]), "valid_loss": float(loss[best]), "candidates_n": c.candidates,
               "drop_p": np.round(np.asarray(jax.nn.sigmoid(p_logit)), 4).tolist(),
               "candidates_acc": _summary(acc), "fixed_rate_acc": {"p": mean_p, **_summary(acc_fixed)},
               **self.gates.extras(keep, p_logit)}
        if not self.gates.genotypes:  # every candidate is a pruned network: rejection keeps them all
            result = self.gates.result(keep, best, keep_fixed)
            return {"arch": result.pop("arch"), **out, **result}
        keep_prob = np.asarray(jax.nn.sigmoid(-p_logit))
        out.update({"mask": keep[best].astype(int).tolist(), "genotype_mapping": c.genotype,
                    "exact_genotype": bool(exact[best])})
        if c.genotype == "rejection":
            return {**out, "pair_valid_acc": out["valid_acc"],
                    **self._rejection(state, key_map, p_logit, evaluator)}
        projected = self.gates.project(keep[best], keep_prob)
        if c.genotype != "ranked":
            return {"arch": projected, **out}
        ranked = self.pick_best(state, self._kept_paths(key_map, self.gates.any_cell(keep)),
                                self._blocks(evaluator, "pgnas ranked genotypes", single=True))
        return {**out, "arch": ranked["arch"], "projected_arch": self.space.to_string(projected),
                "pair_valid_acc": out["valid_acc"], "valid_acc": ranked["valid_acc"],
                "valid_loss": ranked["valid_loss"], "ranked_genotypes": len(ranked["candidates"])}

    def _rejection(self, state, key, p_logit, evaluator) -> dict:
        """genotype=rejection: `pgnas.candidates` one-op-per-edge candidates drawn exactly from the
        posterior conditioned on that event (`one_op_probs`: what rejection sampling of ordinary
        candidates converges to, when hardly any of them is one-op-per-edge), evaluated as keep-masks
        with the shared weights like the ordinary candidates; the best wins (same tie rule)."""
        c = self.cfg.pgnas
        archs, keep = self.gates.one_op_draw(key, p_logit, c.candidates)
        acc, loss = self._evaluate(state, keep, p_logit, evaluator, "pgnas rejection candidates")
        best = search.best(acc, loss)
        return {"arch": archs[best], "mask": keep[best].astype(int).tolist(), "exact_genotype": True,
                "valid_acc": float(acc[best]), "valid_loss": float(loss[best]),
                "rejection": {"draw": "conditional", "candidates": c.candidates,
                              "distinct": len(search.dedup(archs)),
                              "edge_probs": np.round(one_op_probs(p_logit), 4).tolist(),
                              "acc": _summary(acc)}}

    @staticmethod
    def _kept_paths(key, keep) -> np.ndarray:
        """int32[K, 6]: per candidate one genotype, per edge a uniformly drawn kept op (`none` where
        nothing is kept), duplicates removed in first-seen order."""
        u = np.asarray(jax.random.uniform(key, keep.shape))
        score = np.where(keep > 0, u, -1.0)
        pick = np.asarray(GATED_OPS)[score.argmax(-1)]
        archs = np.where(score.max(-1) >= 0, pick, nb.NONE).astype(np.int32)
        return archs[search.dedup(archs)]
