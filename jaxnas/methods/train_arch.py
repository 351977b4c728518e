"""Train one architecture from scratch with the NB201 recipe (`jaxnas train`).

NB201 (Dong & Yang, ICLR 2020, Sec. 3 / xautodl configs/nas-benchmark/hyper-opts/200E.config):
SGD with Nesterov momentum 0.9, lr 0.1 cosine to 0, weight decay 5e-4, batch 256, 200 epochs,
on the whole training set; test accuracy of the final weights. The network is the space's
standalone network of the architecture (affine BN, running statistics), trained in the one loop.
Its step is a plain traced program, jitted on every backend.
"""
from __future__ import annotations

import jax
import numpy as np

from jaxnas import estimate
from jaxnas.methods.base import Method
from jaxnas.nn import apply, count_params, split
from jaxnas.train import optim, steps
from jaxnas.train import state as state_lib


class TrainArch(Method):
    name = "train"
    split = "full"

    @classmethod
    def estimate_seconds(cls, cfg, n_train: int) -> float:
        """Weight steps over the whole training set; nothing to rank."""
        return estimate.supernet_seconds(cfg, n_train, cls.split, rankings=0)

    @classmethod
    def check(cls, cfg, space) -> None:
        super().check(cfg, space)
        if not callable(getattr(space, "build_network", None)):
            raise ValueError(f"jaxnas train builds one architecture's network; space {space.name!r} builds "
                             "none (`build_network`)")

    def __init__(self, cfg, space, num_classes):
        super().__init__(cfg, space, num_classes)
        if not cfg.arch:
            raise ValueError("jaxnas train needs --arch '<architecture string>'")
        self.arch = space.from_string(cfg.arch)
        net = space.build_network(self.arch, space.section(cfg), num_classes, seed=cfg.seed)
        self.graphdef, self._params, self._stats = split(net)
        self.tx = optim.sgd(cfg.train.lr, cfg.train.momentum, cfg.train.nesterov, cfg.train.weight_decay)

    def init(self):
        return state_lib.create(self._params, self._stats, self.cfg.seed, self.tx.init(self._params))

    def train_step(self, state, wbatch, abatch, lr):
        return steps.weight_step(self.tx, self.cfg.train.grad_clip, self.graphdef, state, *wbatch, lr)

    def select(self, state, evaluator):
        return {"arch": self.arch, "test_acc": self.test_accuracy(state, evaluator.images, evaluator.labels),
                "params": count_params(state.params)}

    def test_accuracy(self, state, images, labels, batch: int = 500) -> float:
        """Top-1 accuracy (%) on normalised `images` in eval mode (running BN statistics)."""
        fwd = jax.jit(lambda p, s, x: apply(self.graphdef, p, s, x, train=False)[0].argmax(-1))
        correct = 0
        for i in range(0, len(labels), batch):
            pred = fwd(state.params, state.stats, images[i:i + batch])
            correct += int((np.asarray(pred) == np.asarray(labels[i:i + batch])).sum())
        return 100.0 * correct / len(labels)
