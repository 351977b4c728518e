"""Training-free search (`jaxnas search --method naswot|das|synflow|snip|grad_norm|jacov`).

`select_num` candidates are drawn from the space with the run's seed, scored by the proxy
(`jaxnas.proxies`: NASWOT, Mellor et al. ICML 2021; DAS, arXiv 2212.12132; synflow, snip,
grad_norm, jacov) on the scoring batch, and the best score wins (ties: the first drawn). No
weights are trained: the one loop runs no step and goes straight to `select`.

Combination rules (`jaxnas.proxies.combine`): `--method aznas|naswot_params` ranks the candidates
by that named rule of several metrics, `--method rule` by `proxy.rule` (a named rule or a rule
.json, e.g. calibrated in experiments/zero_cost); the aggregate is over the `select_num` candidates,
and result.json records the rule, its weights and every candidate's metrics.

Fine-ranking (`proxy.fine_rank_top=k`, issue 21): the k best-scored candidates are each trained
`proxy.fine_rank_steps` SGD steps from their fresh weights (the scoring draw, before any
`fast_train_steps`; DAS's fast-training optimiser:
Nesterov 0.9, weight decay 5e-4, `fast_train_lr`, batches of `fast_train_batch_size` from the
weights half of the search split) and the most accurate on the validation batch (the other half,
as the supernet methods rank) wins; ties go to the better score.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxnas import data as data_lib
from jaxnas import search
from jaxnas.methods.base import Method
from jaxnas.proxies import combine
from jaxnas.proxies.scoring import PROXIES, check_space, make_scorer, parse_proxies, proxy_batches
from jaxnas.spaces.arch import Choice
from jaxnas.train import state as state_lib


class TrainingFree(Method):
    """The best of `select_num` candidates by one proxy; `for_proxy(name)` makes the method class."""

    trains = False
    needs_dataset = True  # the scoring batches come from the training set (`proxy_batches`)
    proxy = ""
    rule_name = None  # a combination rule ranks instead: a name in combine.NAMED, "" for proxy.rule

    @classmethod
    def check(cls, cfg, space) -> None:
        super().check(cfg, space)
        check_space(space)
        cls.rule_of(cfg)  # a named rule, or a readable rule file of known metrics

    def __init__(self, cfg, space, num_classes, *, dataset):
        self.check(cfg, space)
        super().__init__(cfg, space, num_classes)
        (self.images, self.labels), self.train_batches = proxy_batches(dataset, cfg)
        self.rule = self.rule_of(cfg)
        self.scorer = make_scorer(cfg, list(self.rule.metrics) if self.rule else [self.proxy], num_classes)
        self.fine_ranker = None
        if cfg.proxy.fine_rank_top:  # the candidates' fresh weights, trained fine_rank_steps steps
            self.fine_ranker = make_scorer(cfg.set({"proxy.fast_train_steps": cfg.proxy.fine_rank_steps}),
                                           ["params"], num_classes)
            self.fine_rank_batches = fine_rank_batches(dataset, cfg)

    @classmethod
    def rule_of(cls, cfg):
        """The combination rule this method ranks by, or None (one proxy)."""
        if cls.rule_name is None:
            return None
        spec = cls.rule_name or cfg.proxy.rule
        if not spec:
            raise ValueError("--method rule ranks by proxy.rule: set it to a named rule "
                             f"({', '.join(combine.NAMED)}) or a rule .json")
        rule = combine.load_rule(spec)
        parse_proxies(",".join(rule.metrics))
        return rule

    @classmethod
    def proxies(cls, cfg) -> list[str]:
        """The proxies this method computes."""
        rule = cls.rule_of(cfg)
        return list(rule.metrics) if rule else [cls.proxy]

    @classmethod
    def cost_in_candidates(cls, cfg) -> float:
        """How many single candidates' scoring a search costs (the CLI's time estimate)."""
        return cfg.eval.select_num

    @classmethod
    def for_proxy(cls, proxy: str) -> type:
        parse_proxies(proxy)
        return type(f"TrainingFree[{proxy}]", (cls,), {"name": proxy, "proxy": proxy})

    @classmethod
    def for_rule(cls, name: str) -> type:
        """The method ranking by combination rule `name` ("rule": the config's proxy.rule)."""
        own = name == "rule"  # ranks by the config's proxy.rule, not a named rule
        return type(f"TrainingFree[{name}]", (cls,), {"name": name, "rule_name": "" if own else name,
                                                      "reads_rule": own})

    def init(self):
        return state_lib.create({}, {}, self.cfg.seed)

    def train_step(self, state, wbatch, abatch, lr):
        raise RuntimeError("a training-free method has no training step")

    def select(self, state, evaluator):
        archs = np.asarray(self.space.sample(jax.random.key(self.cfg.seed), self.cfg.eval.select_num))
        res = self.scorer(archs, self.images, self.labels, *self.train_batches)
        if self.rule is None:
            scores, metrics = res[PROXIES[self.proxy][1]], {}
        else:
            metrics = {m: np.asarray(res[PROXIES[m][1]], np.float64) for m in self.rule.metrics}
            scores = self.rule(metrics)
        order = search.order_by_score(scores)  # NaN lowest, ties to the first drawn
        best = int(order[0])
        fine = None
        if self.fine_ranker is not None:
            top = order[:self.cfg.proxy.fine_rank_top]
            accs = self.fine_rank(archs[top], evaluator)
            best = int(top[search.best_by_score(accs)])
            fine = {"top": len(top), "steps": self.cfg.proxy.fine_rank_steps,
                    "candidates": [{"arch": self.space.to_string(archs[i]), "score": float(scores[i]),
                                    "val_acc": float(v)}
                                   for i, v in zip(top, accs)]}
        out = {"arch": archs[best], "score": float(scores[best]),
               "candidates": [{"arch": self.space.to_string(a), "score": float(v),
                               **{m: float(metrics[m][i]) for m in metrics}}
                              for i, (a, v) in enumerate(zip(archs, scores))]}
        if self.rule is not None:
            out["rule"] = {**self.rule.to_json(), "spec": self.rule_name or self.cfg.proxy.rule}
        if fine is not None:
            out["fine_rank"] = fine
        return out

    def fine_rank(self, archs, evaluator) -> np.ndarray:
        """Validation accuracy of each architecture (host int32 [K, 6]) after its short training."""
        accs = []
        for a in archs:
            params, stats = self.fine_ranker.candidate_weights(a, *self.fine_rank_batches)
            accs.append(float(evaluator(self.fine_ranker.graphdef, params, stats,
                                        Choice(jnp.asarray(a)[None]))["acc"][0]))
        return np.asarray(accs)


def fine_rank_batches(ds, cfg):
    """Fine-ranking's training batches, [T, B, H, W, 3] and [T, B]: a seeded order of the weights
    half of the search split (cycled if T * B exceeds it), normalised, not augmented."""
    w_idx, _ = data_lib.search_split(len(ds.train_labels), cfg.seed, cfg.train.held_out, ds.train_labels,
                                     cfg.train.held_out_from)
    shape = (cfg.proxy.fine_rank_steps, cfg.proxy.fast_train_batch_size)
    pick = np.resize(w_idx[np.random.default_rng(cfg.seed + 2).permutation(len(w_idx))], shape[0] * shape[1])
    x = np.asarray(data_lib.normalize(ds.train_images[pick], ds.mean, ds.std))
    return x.reshape(shape + x.shape[1:]), ds.train_labels[pick].astype(np.int32).reshape(shape)
