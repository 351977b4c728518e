"""The `nb201` config section (JAX-free: `jaxnas.config` reads it through `jaxnas.registry`): the
NB201 networks' width, depth, BatchNorm and single-path formulation, and what the presets set."""
from __future__ import annotations

import dataclasses

from jaxnas.sections import check_choice, check_positive

IMPLS = ("auto", "eager", "merged", "switch", "mask")  # single-path formulations (jaxnas.backend)


@dataclasses.dataclass(frozen=True)
class NB201:
    NAME = "nb201"
    C: int = 16                        # channels of the first stage
    N: int = 5                         # cells per stage
    affine: bool = False               # affine BN in the search cells (reference: off)
    track_running_stats: bool = False  # running BN statistics in the search cells (NB201 scripts: BN=0)
    single_path_impl: str = "auto"     # eager | merged | switch | mask | auto (fastest exact one per backend)

    def check(self):
        check_positive(self, ("C", "N"))
        check_choice(self, "single_path_impl", IMPLS)


SECTION = NB201
# `tiny`: a narrow, shallow supernet; `train-*`: NB201's training recipe (xautodl 200E.config) trains
# the standalone network with affine BN and running statistics
_TRAINED = {"nb201.affine": True, "nb201.track_running_stats": True}
PRESETS = {
    "tiny": {"nb201.C": 8, "nb201.N": 1},
    "train-paper": _TRAINED,
    "train-tiny": {"nb201.C": 8, "nb201.N": 1, **_TRAINED},
}
RENAMED = {name: f"nb201.{name}" for name in ("C", "N", "affine", "track_running_stats", "single_path_impl")}
