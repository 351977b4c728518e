"""SETN's config section, `setn` (JAX-free: `jaxnas.config` reads it through `jaxnas.registry`):
its evaluator's optimiser (Adam on alpha) and how candidates are drawn (`jaxnas.methods.setn`)."""
from __future__ import annotations

import dataclasses

from jaxnas.sections import check_choice


@dataclasses.dataclass(frozen=True)
class SETN:
    NAME = "setn"
    select: str = "topk"               # candidates: topk (highest log-probability) | sample (from alpha)
    arch_lr: float = 3e-4              # Adam learning rate of alpha
    arch_beta1: float = 0.5            # Adam beta1
    arch_beta2: float = 0.999          # Adam beta2
    arch_weight_decay: float = 1e-3    # Adam L2 weight decay

    def check(self):
        check_choice(self, "select", ("topk", "sample"))


SECTION = SETN
RENAMED = {**{name: f"setn.{name}" for name in ("arch_lr", "arch_beta1", "arch_beta2", "arch_weight_decay")},
           "setn_select": "setn.select"}
