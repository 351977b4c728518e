"""The `mobile` config section (JAX-free: `jaxnas.config` reads it through `jaxnas.registry`): the
MobileNetV2-like skeleton NSE searches (Ci et al., ICCV 2021; orashi/NSE_NAS utils/supernet_utils.py
`MACSuperNet`, config experiments/NSE/config_NSE27.yaml), which fixes the shape of an architecture.

Defaults are the reference's ImageNet skeleton. `resolution=32` is jaxnas's CIFAR variant (the
reference has none): stem stride 1 and the first reduction cell at stride 1, the usual CIFAR
MobileNetV2 arrangement (docs/nse-reference.md section 1).
"""
from __future__ import annotations

import dataclasses

from jaxnas.sections import check_choice, check_positive


@dataclasses.dataclass(frozen=True)
class Mobile:
    NAME = "mobile"
    alloc: tuple = (1, 3, 3, 3, 3, 3)                   # N cells per stage of the NER plan (`alloc_space`)
    channels: tuple = (16, 24, 40, 80, 96, 192, 320)    # stem, then each stage (`channel_dist`)
    scale: float = 1.0                                  # width multiplier (the stem is not scaled)
    head: int = 1024                                    # the last 1x1 conv's channels
    resolution: int = 224                               # input side: 224 (ImageNet) or 32 (CIFAR variant)
    ops: tuple[str, ...] = ()                           # the pool by name, e.g. mb3t3,mb5t6 (): all 27
    impl: str = "auto"                                  # weight steps: traced (the round's whole subset,
    #                                                     gated) | eager (the gated-on ops only, on the
    #                                                     host; BENCHMARKS.md 16c) | auto: eager on CPU

    def check(self):
        check_positive(self, ("head", "resolution"))
        check_choice(self, "impl", ("auto", "traced", "eager"))
        if not self.scale > 0:
            raise ValueError(f"mobile.scale is a width multiplier > 0, got {self.scale}")
        if len(self.alloc) != 6 or any(a < 0 for a in self.alloc):
            raise ValueError(f"mobile.alloc holds 6 counts of N cells >= 0 (one per stage), got {self.alloc}")
        if len(self.channels) != 7 or any(c < 1 for c in self.channels):
            raise ValueError(f"mobile.channels holds 7 widths >= 1 (the stem and 6 stages), got "
                             f"{self.channels}")
        if self.resolution not in (32, 224):
            raise ValueError(f"mobile.resolution must be 224 (ImageNet) or 32 (the CIFAR variant), got "
                             f"{self.resolution}")


SECTION = Mobile
# `jaxnas train` on this space: the reference has no retraining code (docs/nse-reference.md section
# 11, question 4), so jaxnas's own recipe: the search's weight optimiser (SGD Nesterov 0.9, weight
# decay 4e-5) at lr 0.1 with a per-step cosine to 0, batch 128; 200 epochs (`train-paper`), 3 (`train-tiny`).
_RECIPE = {"train.batch_size": 128, "train.lr": 0.1, "train.lr_min": 0.0, "train.momentum": 0.9,
           "train.nesterov": True, "train.weight_decay": 4e-5, "train.grad_clip": 0.0}
SPACE_PRESETS = {"train-paper": {**_RECIPE, "train.epochs": 200},
                 "train-tiny": {**_RECIPE, "train.epochs": 3}}
