"""The `hybrid` config section (JAX-free: `jaxnas.config` reads it through `jaxnas.registry`): the
width and depth of PGNAS's hybrid multi-kernel ResNet, and what the presets set."""
from __future__ import annotations

import dataclasses

from jaxnas.sections import check_positive


@dataclasses.dataclass(frozen=True)
class Hybrid:
    NAME = "hybrid"
    C: int = 16                        # channels of the first stage (a multiple of the 4 kernel branches)
    blocks: int = 4                    # residual blocks per stage (the supplement's SupNet-M: 4)

    def check(self):
        check_positive(self, ("C", "blocks"))
        if self.C % 4:
            raise ValueError("hybrid.C divides its channels among 4 kernel branches: a multiple of 4, got "
                             f"{self.C}")


SECTION = Hybrid
# `paper`: the defaults (the supplement's SupNet-M, width jaxnas's choice); `tiny`: CPU-sized
_TINY = {"hybrid.C": 8, "hybrid.blocks": 1}
PRESETS = {"tiny": _TINY, "train-tiny": _TINY}
