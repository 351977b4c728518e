"""RSPS: random sampling with parameter sharing (Li & Talwalkar 2019), an NB201 baseline.

Weight training samples one architecture uniformly per step (xautodl exps/NAS-Bench-201-algos/
RANDOM-NAS.py, `random_genotype` per batch). At the end `select_num` uniformly sampled candidates
are ranked with the shared weights and the most accurate wins. Unlike the reference, which scores
each candidate on a different validation batch, all candidates here share one validation batch
(`eval_batch_size` images), so their ranking is not confounded by batch noise. Sampling respects
the space state (a shrunk space draws only from what it keeps).
"""
from __future__ import annotations

from jaxnas.methods.base import SupernetMethod
from jaxnas.train.state import KEY_SAMPLE, select_key, step_key


class RSPS(SupernetMethod):
    name = "rsps"

    def train_step(self, state, wbatch, abatch, lr):
        arch = self.space.sample(step_key(state, KEY_SAMPLE), 1, state.space)[0]
        return self.weight_step(state, *wbatch, arch, lr)

    def select(self, state, evaluator):
        archs = self.space.sample(select_key(state), self.cfg.eval.select_num, state.space)
        return self.pick_best(state, archs, evaluator)
