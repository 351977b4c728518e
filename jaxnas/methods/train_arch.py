"""Train one architecture from scratch with the NB201 recipe (`jaxnas train`).

NB201 (Dong & Yang, ICLR 2020, Sec. 3 / xautodl configs/nas-benchmark/hyper-opts/200E.config):
SGD with Nesterov momentum 0.9, lr 0.1 cosine to 0, weight decay 5e-4, batch 256, 200 epochs,
on the whole training set; test accuracy of the final weights. The network is the standalone
NB201 network (affine BN, running statistics), trained in the shared search loop.
"""
from __future__ import annotations

import jax
import numpy as np
from flax import nnx

from jaxnas.methods.base import SupernetMethod
from jaxnas.nn import apply
from jaxnas.spaces.nb201.networks import NB201Network
from jaxnas.spaces import nb201
from jaxnas.train import steps


class TrainArch(SupernetMethod):
    name = "train"
    split = "full"

    def build_model(self, num_classes):
        if not self.cfg.arch:
            raise ValueError("jaxnas train needs --arch '<NB201 string>'")
        self.arch = nb201.from_string(self.cfg.arch)
        return NB201Network(self.arch, self.cfg.C, self.cfg.N, num_classes, rngs=nnx.Rngs(self.cfg.seed))

    # The standalone network's step is a plain traced program: jitted on every backend. (The base
    # class's host step is for the supernet's eager single path; inherited here, it ran this step
    # op by op outside jit on CPU: ~100 images/s, and an XLA:CPU all-reduce abort under 8 devices.)
    host_step = False

    def train_step(self, state, wbatch, abatch, lr):
        return steps.weight_step(self.cfg, self.graphdef, state, *wbatch, lr)

    def finish(self, state, ctx):
        acc = self.test_accuracy(state, ctx.images, ctx.labels)
        return {"arch": self.arch, "test_acc": acc}

    def test_accuracy(self, state, images, labels, batch: int = 500) -> float:
        """Top-1 accuracy (%) on normalised `images` in eval mode (running BN statistics)."""
        fwd = jax.jit(lambda p, s, x: apply(self.graphdef, p, s, x, train=False)[0].argmax(-1))
        correct = 0
        for i in range(0, len(labels), batch):
            pred = fwd(state.params, state.stats, images[i:i + batch])
            correct += int((np.asarray(pred) == np.asarray(labels[i:i + batch])).sum())
        return 100.0 * correct / len(labels)
