"""The `smash` config section (JAX-free: `jaxnas.config` reads it through `jaxnas.registry`): the sizes
of SMASH's memory-bank network (Brock et al., ICLR 2018), which fix the shape of an architecture.

Defaults are the reference's command-line defaults (ajbrock/SMASH `utils.train_parser`; its `SMASH`
class's own keyword defaults differ: max_bottleneck 4, depth_compression 4). `max_layers` is
jaxnas's: architectures are fixed-shape arrays, so a block holds at most that many layers.
"""
from __future__ import annotations

import dataclasses

from jaxnas.sections import check_choice, check_positive

OPS = ("single", "var", "big")  # the reference's op configurations: default, --var-op, --big-op


@dataclasses.dataclass(frozen=True)
class Smash:
    NAME = "smash"
    depth: int = 12                 # reference layers per block of the parameter budget (2x the WRN blocks)
    width: int = 4                  # widening factor of the budget; the stem has 2 N width channels
    N: int = 8                      # channels of the smallest memory bank; 1x1 output units come in N's
    N_max: int = 64                 # most units a layer's generated 1x1 conv has (k = N_max / N)
    bottleneck: int = 4             # a layer's 1x1 outputs up to bottleneck x its G N units
    max_bottleneck: int = 2         # ... and at most max_bottleneck x N_max
    depth_compression: int = 2      # memory banks of N channels per column of the HyperNet's grid
    max_kernel: int = 7             # kernel sides from {3, 5, 7} (annealed from 3 during training)
    max_groups: int = 8             # groups from the divisors of N up to this
    ops: str = "single"             # op configurations: single conv (reference default), var, big
    max_layers: int = 48            # static bound on a block's layers (the sampler stops there)
    encoding: str = "fixed"         # HyperNet input c: fixed (quirks fixed), reference (kept; encoding.py)
    impl: str = "auto"              # the network's execution: traced (one program, every layer at the
                                    # widest shapes), eager (exact shapes on the host, eager.py), auto
                                    # (eager on CPU, traced elsewhere)

    def check(self):
        check_positive(self, ("depth", "width", "N", "N_max", "bottleneck", "max_bottleneck",
                              "depth_compression", "max_kernel", "max_groups", "max_layers"))
        check_choice(self, "ops", OPS)
        check_choice(self, "encoding", ("fixed", "reference"))
        check_choice(self, "impl", ("auto", "traced", "eager"))
        if self.N_max % self.N:
            raise ValueError(f"smash.N_max must be a multiple of smash.N, got N_max={self.N_max}, N={self.N}")
        if self.max_kernel not in (3, 5, 7):
            raise ValueError(f"smash.max_kernel must be 3, 5 or 7 (the dilation rule has no 9), got "
                             f"{self.max_kernel}")
        if self.N % self.max_groups:
            raise ValueError(f"smash.max_groups must divide smash.N, got max_groups={self.max_groups}, "
                             f"N={self.N}")
        if self.depth_compression != 2:
            # the reference's column formula (SMASH.py sample_weights) is a ceiling only when it is 2
            raise ValueError(f"smash.depth_compression must be 2 (the reference's encoding layout), got "
                             f"{self.depth_compression}")


SECTION = Smash
# `tiny`: the CPU protocol of the original-space smoke test (seed-methods.md SMASH-5 (c))
_TINY = {"smash.depth": 4, "smash.width": 1, "smash.N_max": 32, "smash.max_layers": 16}
PRESETS = {"tiny": _TINY, "train-tiny": _TINY}
# `jaxnas train` on this space: the reference's recipe for a found architecture (ajbrock/SMASH
# train.py with MainNet: SGD Nesterov 0.9, lr 0.1 with a per-step cosine to 0, weight decay 1e-4,
# batch 50, no gradient clipping). `train-paper` trains 300 epochs, as the paper did for its derived
# networks (4.03 % CIFAR-10 error at 16M parameters, Table 1); the code's default is 100
# (`train.epochs=100`). `train-tiny`: 3 epochs.
_RECIPE = {"train.batch_size": 50, "train.lr": 0.1, "train.lr_min": 0.0, "train.momentum": 0.9,
           "train.nesterov": True, "train.weight_decay": 1e-4, "train.grad_clip": 0.0}
SPACE_PRESETS = {"train-paper": {**_RECIPE, "train.epochs": 300},
                 "train-tiny": {**_RECIPE, "train.epochs": 3}}
