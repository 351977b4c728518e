"""NSE's method section, `nse` (JAX-free: `jaxnas.config` reads it through `jaxnas.registry`): the
evolving subset, the architecture step, the MAC penalty and window, the round end's sampling and the
pick (`jaxnas.methods.nse`), and the presets. The skeleton's sizes are the space's section, `mobile`.
Values are the reference's (orashi/NSE_NAS@939edf2 experiments/NSE/config_NSE27.yaml, main.py
defaults; docs/nse-reference.md section 9). MACs are counted in millions, as the reference does.
"""
from __future__ import annotations

import dataclasses

from jaxnas.sections import check_positive


@dataclasses.dataclass(frozen=True)
class Nse:
    NAME = "nse"
    k: int = 5                          # operators a cell trains and searches at once (the subset S_c)
    arch_every: int = 2                 # an architecture step after every arch_every-th weight step (Aiter)
    arch_lr: float = 5e-3               # alpha's Adam (optim_A): lr, betas (0, 0.999), eps 1e-8
    arch_b1: float = 0.0
    arch_b2: float = 0.999
    drop_threshold: float = -2.0        # cleaning drops an operator whose alpha falls below this
    preserve: bool = True               # ... unless the last Pareto front kept it (preserve_prev)
    mac_alpha: float = 1e-5             # penalty mac_alpha (E[MACs] + back - target)^mac_beta, MACs in M
    mac_beta: float = 2.0
    mac_target: float = 0.0             # M MACs (0: no target, so no penalty and no window)
    window: tuple = (1.0, 7 / 6)        # round-end samples with cost in (lo, hi) x mac_target (D1)
    extra_width: float = 1 / 30         # extras in (lo - extra_width x target, lo]
    sample_num: int = 2000              # round-end samples (unique, in the window)
    extra_num: int = 100                # extras just below the window (they trim the front's cheap end)
    budget: float = 0.0                 # the pick: the front's most accurate under this many M MACs (0: any)

    def check(self):
        check_positive(self, ("k", "arch_every", "sample_num"))
        if self.arch_lr <= 0 or self.mac_target < 0:
            raise ValueError("nse.arch_lr must be > 0 and nse.mac_target >= 0")
        if self.k < 2:
            raise ValueError(f"nse.k must be >= 2 (a subset to search among), got {self.k}")
        if len(self.window) != 2 or not 0 < self.window[0] < self.window[1]:
            raise ValueError(f"nse.window is (lo, hi) x mac_target with 0 < lo < hi, got {self.window}")
        if self.extra_num < 0 or self.extra_width < 0 or self.mac_alpha < 0 or self.budget < 0:
            raise ValueError("nse.extra_num, extra_width, mac_alpha and budget must be >= 0")
        if not (0 <= self.arch_b1 < 1 and 0 <= self.arch_b2 < 1):
            raise ValueError("nse.arch_b1 and arch_b2 must be in [0, 1)")


SECTION = Nse
# The weights (main.py:83-110, config_NSE27.yaml:40-53): SGD Nesterov 0.9, weight decay 4e-5 (none on
# BN and biases), lr 0.4 with a 2-epoch warm-up from 0.1 then a cosine to 0, restarting every round;
# no gradient clipping; an op's weights decay when it is not sampled too (PyTorch's zero_grad keeps
# zero gradients); the held-out split serves the architecture steps and the scoring; candidates are
# scored after BN recalibration. The paper's 6 rounds x 100 epochs at batch 1024 on ImageNet.
_PROTOCOL = {"train.momentum": 0.9, "train.nesterov": True, "train.weight_decay": 4e-5,
             "train.grad_clip": 0.0, "train.lr_min": 0.0, "train.schedule": "cosine_per_round",
             "train.decay_unsampled": True, "eval.bn": "recal"}
# The NB201 variant (issue 32 item 3; the paper has none): the subset K = 3 of an edge's 5 operations,
# two rounds, no MAC target (every architecture is a genotype; the front is over NB201 FLOPs), the
# weights trained as the engine trains NB201 supernets (RSPS's recipe), the total epochs NB201's.
_NB201 = {"nse.k": 3, "nse.mac_target": 0.0, "nse.extra_num": 0, "train.rounds": 2,
          "train.schedule": "cosine_per_round", "train.warmup_epochs": 0.0, "train.momentum": 0.9,
          "train.nesterov": True, "train.weight_decay": 5e-4, "train.decay_unsampled": False,
          "eval.bn": "batch"}
PRESETS = {
    "paper": {**_PROTOCOL, "nse.mac_target": 300.0, "train.lr": 0.4, "train.warmup_epochs": 2,
              "train.epochs": 100, "train.rounds": 6, "train.batch_size": 1024, "eval.recal_batches": 50,
              "mobile.resolution": 224},
    "paper/nb201": {**_NB201, "nse.sample_num": 100, "train.lr": 0.025, "train.epochs": 125,
                    "train.batch_size": 64},
    # CPU-sized (docs/nse-reference.md section 9): the CIFAR skeleton at scale 0.25, one N cell a stage,
    # 2 rounds of 2 epochs, 20 samples. The target is within reach of the first round's law: the
    # paper's ratio (0.6 of the all-mb3t6 network, 9 M) is not: in 2 epochs (about 23 architecture steps
    # at lr 5e-3) alpha barely moves, and none of 4,000 draws from the initial law cost under 13.5 M
    # (10 % under 28.7 M; 2026-12-08); at 24 M
    # 5 % of them fall in the window and 0.6 % among the extras. The penalty is scaled by (300 / 24)^2
    # to the paper's relative strength.
    "tiny": {**_PROTOCOL, "train.lr": 0.05, "train.epochs": 2, "train.rounds": 2, "train.batch_size": 64,
             "eval.recal_batches": 2, "eval.batch_size": 256, "mobile.resolution": 32,
             "mobile.alloc": (1, 1, 1, 1, 1, 1), "mobile.scale": 0.25, "mobile.head": 256,
             "nse.mac_target": 24.0, "nse.mac_alpha": 0.0016, "nse.sample_num": 20, "nse.extra_num": 4},
    "tiny/nb201": {**_NB201, "nse.sample_num": 20, "train.lr": 0.05, "train.epochs": 2},
}
