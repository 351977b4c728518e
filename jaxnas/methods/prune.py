"""Training-free pruning search (`jaxnas search --method prune`): start from the whole cell and,
round by round, drop on every edge the op whose removal hurts a combination rule least.

Follows TE-NAS (Chen, Gong & Wang, "Neural Architecture Search on ImageNet in Four GPU Hours: A
Theoretically Inspired Perspective", ICLR 2021; VITA-Group/TENAS `prune_tenas.py`, NB201 setting):
  - the supernet's cell keeps every op and each edge is the mean of the ops it keeps (TE-NAS: a
    softmax of equal alphas, pruned ops at -inf), scored here as a mixed `Gates` cell;
  - `none` is dropped before the first round (TE-NAS sets its alpha to -inf at the start), so an
    NB201 search takes three rounds, of 24, 18 and 12 candidates;
  - in a round every kept op of an edge with more than one op is a candidate, scored as the cell
    without it, every candidate with the same weights;
  - on every such edge the candidate whose cell the rule scores best is removed, one op per edge
    per round, until every edge keeps one op: that op is the architecture.

Where this differs from TE-NAS:
  - the metrics and their combination are any rule (`proxy.rule`, default `naswot_params`: NASWOT
    and the parameter count, log-rank), not TE-NAS's NTK condition number and linear-region
    count with dense ranks summed. Ranking the candidates' own scores is what TE-NAS's relative
    deltas amount to: every candidate of a round is compared with the same unpruned cell, and
    (m0 - m) / m0 orders as -m.
  - one scoring batch (`proxy.batch_size` training images) and one weight draw for the whole
    search (`ProxyScorer.mixed_weights`), at the network size nb201.C, nb201.N; TE-NAS averages 3
    batches of 72 and scores NTK on a C=3, N=1 network and linear regions on a single C=1 cell
    fed 3x3 crops.
  - ties go to the first candidate in (edge, op) order.
"""
from __future__ import annotations

import numpy as np

from jaxnas.methods.training_free import TrainingFree
from jaxnas.proxies.scoring import PROXIES
from jaxnas.report import progress_bar
from jaxnas.spaces.base import has

DEFAULT_RULE = "naswot_params"
MIXED_CELL_COST = 3.0  # a mixed cell's forward in single-architecture forwards (every op runs)


def prune(score, start) -> tuple[np.ndarray, list[dict]]:
    """(final mask, rounds) of the pruning search from mask `start` bool [E, O].

    `score(masks bool [K, E, O])` -> float64 [K], higher for a better cell (the rule over this
    round's candidates). Each round records its candidates [[edge, op], ...], their scores and the
    ops it removed."""
    mask = np.array(start, bool)
    if not mask.any(-1).all():
        raise ValueError("every edge of the starting cell must keep at least one op")
    rounds = []
    while (mask.sum(-1) > 1).any():
        cands = [(e, o) for e in range(mask.shape[0]) if mask[e].sum() > 1 for o in np.flatnonzero(mask[e])]
        masks = np.repeat(mask[None], len(cands), 0)
        for i, (e, o) in enumerate(cands):
            masks[i, e, o] = False
        values = np.asarray(score(masks), np.float64)
        removed = []
        for e in sorted({e for e, _ in cands}):
            rows = [i for i, c in enumerate(cands) if c[0] == e]
            best = rows[int(np.argmax(np.nan_to_num(values[rows], nan=-np.inf)))]
            removed.append(cands[best])
        for e, o in removed:
            mask[e, o] = False
        rounds.append({"candidates": [[int(e), int(o)] for e, o in cands], "scores": values.tolist(),
                       "removed": [[int(e), int(o)] for e, o in removed]})
    return mask, rounds


class Prune(TrainingFree):
    """TE-NAS-style pruning of the whole cell by `proxy.rule` (default naswot_params): a space whose
    relaxed form is edges x ops (`relaxed_spec`, NB201's [6, 5]) and whose networks the proxies read."""

    name = "prune"
    rule_name = ""
    reads_rule = True

    @classmethod
    def check(cls, cfg, space) -> None:
        if cfg.proxy.fine_rank_top:
            raise ValueError("proxy.fine_rank_top re-ranks sampled candidates; --method prune ends at one "
                             "cell")
        super().check(cfg, space)
        if not has(space, "relaxed_spec") or len(space.relaxed_spec.shape) != 2:
            raise ValueError(f"--method prune prunes a cell of edges x ops (`relaxed_spec`); space "
                             f"{space.name!r} has none")

    @classmethod
    def rule_of(cls, cfg):
        return super().rule_of(cfg if cfg.proxy.rule else cfg.set({"proxy.rule": DEFAULT_RULE}))

    def select(self, state, evaluator):
        metric_rows = []
        edges, ops = self.space.relaxed_spec.shape  # a cell: an architecture picks one op per edge
        start = np.ones((edges, ops), bool)
        if self.space.zero_op is not None:
            start[:, self.space.zero_op] = False  # TE-NAS drops `none` before the first round
        # candidates of round r: on every edge still holding more than one op, each of its kept ops
        total = sum(int(k) for r in range(ops) for k in start.sum(-1) - r if k > 1)
        bar = progress_bar(total, 0, self.progress, "prune", unit="cell")

        def score(masks):
            res = self.scorer.score_mixed(masks, self.images, self.labels)
            metrics = {m: res[PROXIES[m][1]] for m in self.rule.metrics}
            metric_rows.append(metrics)
            bar.update(len(masks))
            return self.rule(metrics)

        mask, rounds = prune(score, start)
        bar.close()
        for r, metrics in zip(rounds, metric_rows):
            r["metrics"] = {m: v.tolist() for m, v in metrics.items()}
        arch = mask.argmax(-1).astype(np.int32)
        final = self.scorer.score_mixed(mask[None], self.images, self.labels)
        # `score`: none; a rule ranks a population and the pruned cell has none. Its metrics instead.
        return {"arch": arch, "score": None,
                "metrics": {m: float(final[PROXIES[m][1]][0]) for m in self.rule.metrics},
                "rounds": rounds,
                "rule": {**self.rule.to_json(), "spec": self.cfg.proxy.rule or DEFAULT_RULE}}

    @classmethod
    def cost_in_candidates(cls, cfg) -> float:
        """Mixed cells scored (24 + 18 + 12 + the final one), each costing about MIXED_CELL_COST
        single architectures."""
        return 55 * MIXED_CELL_COST
