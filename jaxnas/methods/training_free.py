"""Training-free search (`jaxnas search --method naswot|das|synflow|snip|grad_norm|jacov`).

`select_num` candidates are drawn from the space with the run's seed, scored by the proxy
(`jaxnas.proxies`: NASWOT, Mellor et al. ICML 2021; DAS, arXiv 2212.12132; synflow, snip,
grad_norm, jacov) on the scoring batch, and the best score wins (ties: the first drawn). No
weights are trained: the one loop runs no step and goes straight to `select`.
"""
from __future__ import annotations

import jax
import numpy as np

from jaxnas.methods.base import Method
from jaxnas.proxies.scoring import PROXIES, make_scorer, parse_proxies, proxy_batches
from jaxnas.train import state as state_lib


class TrainingFree(Method):
    """The best of `select_num` candidates by one proxy; `for_proxy(name)` makes the method class."""

    trains = False
    needs_dataset = True  # the scoring batches come from the training set (`proxy_batches`)
    proxy = ""

    def __init__(self, cfg, space, num_classes, *, dataset):
        if space.name != "nb201":
            raise ValueError(f"the training-free proxies read NB201 networks; space {space.name!r} is not supported")
        super().__init__(cfg, space, num_classes)
        (self.images, self.labels), self.train_batches = proxy_batches(dataset, cfg)
        self.scorer = make_scorer(cfg, [self.proxy], num_classes)

    @classmethod
    def for_proxy(cls, proxy: str) -> type:
        parse_proxies(proxy)
        return type(f"TrainingFree[{proxy}]", (cls,), {"name": proxy, "proxy": proxy})

    def init(self):
        return state_lib.create({}, {}, self.cfg.seed)

    def train_step(self, state, wbatch, abatch, lr):
        raise RuntimeError("a training-free method has no training step")

    def select(self, state, evaluator):
        archs = np.asarray(self.space.sample(jax.random.key(self.cfg.seed), self.cfg.eval.select_num))
        scores = self.scorer(archs, self.images, self.labels, *self.train_batches)[PROXIES[self.proxy][1]]
        best = int(np.lexsort((np.arange(len(scores)), -np.nan_to_num(scores, nan=-np.inf)))[0])
        return {"arch": archs[best], "score": float(scores[best]),
                "candidates": [{"arch": self.space.to_string(a), "score": float(v)} for a, v in zip(archs, scores)]}
