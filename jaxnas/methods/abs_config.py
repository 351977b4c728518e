"""ABS's config section, `abs` (JAX-free: `jaxnas.config` reads it through `jaxnas.registry`): the
base method it wraps, the operator score and the shrinking schedule (`jaxnas.methods.abs`)."""
from __future__ import annotations

import dataclasses

from jaxnas.sections import check_choice, check_positive


@dataclasses.dataclass(frozen=True)
class ABS:
    NAME = "abs"
    base: str = "rsps"                 # the supernet method ABS wraps: rsps | setn
    metric: str = "angle"              # operator score: angle (the paper) | acc | magnitude (SETN's alpha)
    # oneshot (NB201 study: drop drop_num once) | progressive (ImageNet code)
    schedule: str = "oneshot"
    shrink_after: int = 0              # epochs before the (first) shrink; 0: half of the run's epochs
    drop_num: int = 20                 # oneshot: operators dropped (NB201: 20 of 30)
    per_stage: int = 5                 # progressive: operators dropped per stage
    stage_epochs: int = 1              # progressive: epochs between stages
    min_size: int = 16                 # progressive: stop once the space has <= this many architectures
    # progressive: replace theta0 once more than this many are dropped (0: never)
    reset_after: int = 0
    acc_archs: int = 300               # metric=acc: seeded architectures evaluated with the shared weights

    def check(self):
        check_choice(self, "base", ("rsps", "setn"))
        check_choice(self, "metric", ("angle", "acc", "magnitude"))
        check_choice(self, "schedule", ("oneshot", "progressive"))
        check_positive(self, ("drop_num", "per_stage", "stage_epochs", "min_size", "acc_archs"))
        if self.shrink_after < 0 or self.reset_after < 0:
            raise ValueError("abs.shrink_after and abs.reset_after must be >= 0")
        if self.metric == "magnitude" and self.base != "setn":
            raise ValueError("abs.metric=magnitude scores operators by SETN's alpha: set abs.base=setn")


SECTION = ABS
