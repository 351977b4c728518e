"""PGNAS's config section, `pgnas` (JAX-free: `jaxnas.config` reads it through `jaxnas.registry`):
the concrete-dropout gates, their regulariser and candidate sampling (`jaxnas.methods.pgnas`), and
its presets."""
from __future__ import annotations

import dataclasses

from jaxnas.sections import check_choice, check_positive


@dataclasses.dataclass(frozen=True)
class PGNAS:
    NAME = "pgnas"
    length_scale_sq: float = 50.0      # l^2 of the weight prior (supplement, SupNet-M on CIFAR-10: 50)
    n_train: float = 0.0               # effective training-set size N; 0: 10x the training images (the
                                       # supplement's 5e5 for CIFAR-10's 5e4, "because of augmentation")
    tau: float = 0.2                   # concrete temperature (supplement)
    p_init: float = 0.1                # initial drop probability (supplement)
    rescale: bool = False              # Gal's 1/(1-p) rescaling of gated inputs (the reference has none)
    per_cell: bool = False             # NB201: one drop probability per (cell, edge, op) instead of per
                                       # (edge, op) shared by the cells
    candidates: int = 1500             # (architecture, weights) pairs sampled at selection (paper, CIFAR-10)
    genotype: str = "ranked"           # candidate -> NB201 genotype (the paper defines none): ranked (kept
                                       # single paths ranked with the shared weights; the default: it picks
                                       # best, experiments/pgnas/seeds.py) | projection (per edge the kept op
                                       # of highest keep probability; favours parameter-free cells) |
                                       # rejection (one-op-per-edge candidates drawn from the conditioned
                                       # posterior: one more evaluation pass)

    def check(self):
        check_positive(self, ("candidates",))
        check_choice(self, "genotype", ("projection", "rejection", "ranked"))
        if not (self.length_scale_sq >= 0 and self.n_train >= 0 and self.tau > 0 and 0 < self.p_init < 1):
            raise ValueError("pgnas needs length_scale_sq >= 0, n_train >= 0, tau > 0 and 0 < p_init < 1")


SECTION = PGNAS
# PGNAS supplement 1.1, SupNet-M on CIFAR-10: lr 0.01 cosine, 1,800 epochs, batch 128, no weight decay
# (the l^2 term replaces it), l^2 = 50, tau 0.2, p_init 0.1, N = 5e5. Not reproduced: cutout 16 (no
# cutout in jaxnas.data) and the shake-shake base network (the hybrid network is a plain
# post-activation ResNet, 4 blocks per stage, width hybrid.C=16: jaxnas's choice; the space's own
# presets size it). `tiny`: 10 epochs and 100 candidates.
PRESETS = {
    "paper": {"train.epochs": 1800, "train.batch_size": 128, "train.lr": 0.01, "train.lr_min": 0.0,
              "train.weight_decay": 0.0, "pgnas.n_train": 5e5},
    "tiny": {"train.epochs": 10, "pgnas.candidates": 100},
}
