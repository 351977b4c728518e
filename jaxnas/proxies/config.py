"""The training-free proxies' config section, `proxy` (JAX-free: `jaxnas.config` reads it through
`jaxnas.registry`), shared by `jaxnas score` and the training-free methods (`--method naswot`,
`rule`, `prune`, ...)."""
from __future__ import annotations

import dataclasses

from jaxnas.sections import check_choice, check_positive


@dataclasses.dataclass(frozen=True)
class Proxy:
    NAME = "proxy"
    names: str = "naswot"              # proxies to compute, comma-separated (`jaxnas score`); the first ranks
    batch_size: int = 128              # images the proxies see (NASWOT paper: 128)
    init: str = "per_arch"             # per_arch: a fresh network per candidate (reference) | shared
    das_da: str = "logdet"             # DAS's distinguishing ability: logdet (log|S|) | min_dist (the
                                       # closest pair of images' codes; ranks NB201 better,
                                       # experiments/proxy_fidelity)
    das_weight: float | None = None  # DAS = DA + das_weight * B * log(NAU); 1.0 with logdet is NASWOT.
                                       # None: the DA's weight chosen on a 200-arch calibration set
                                       # (logdet 1.75, min_dist 1.33; experiments/proxy_fidelity)
    az_spectrum: str = "reference"     # AZ-NAS expressivity's covariance spectrum: reference (float32 as it
                                       # comes; rounding makes ~6% of NB201 cells -inf) | psd (negative
                                       # eigenvalues clamped to 0; jaxnas.proxies.aznas)
    fast_train_steps: int = 0          # DAS fast training: SGD steps per candidate before scoring
    fast_train_lr: float = 0.1         # its learning rate
    fast_train_batch_size: int = 64    # its batch size
    archs: str = "all"                 # `jaxnas score`: all | N (seeded sample) | file of arch strings
    rule: str = ""                     # combination rule of metrics (jaxnas.proxies.combine): a named rule
                                       # (aznas, naswot_params) or a rule .json; `jaxnas score` adds its
                                       # aggregate (aggregate.csv), `jaxnas search --method rule` ranks by it
    fine_rank_top: int = 0             # training-free search: train the top k candidates fine_rank_steps SGD
                                       # steps (fast_train_lr / _batch_size) and pick the most accurate on the
                                       # validation batch (0: off, the best score wins)
    fine_rank_steps: int = 50          # those steps, on the weights half of the search split

    def check(self):
        check_positive(self, ("batch_size", "fast_train_batch_size"))
        check_choice(self, "init", ("per_arch", "shared"))
        check_choice(self, "das_da", ("logdet", "min_dist"))
        check_choice(self, "az_spectrum", ("reference", "psd"))
        if self.fast_train_steps < 0 or self.fast_train_lr <= 0:
            raise ValueError("proxy.fast_train_steps must be >= 0 and proxy.fast_train_lr > 0")
        if self.fine_rank_top < 0 or self.fine_rank_steps < 1:
            raise ValueError("proxy.fine_rank_top must be >= 0 and proxy.fine_rank_steps >= 1")


SECTION = Proxy
RENAMED = {"proxy": "proxy.names", "proxy_batch_size": "proxy.batch_size", "proxy_init": "proxy.init",
           "das_da": "proxy.das_da", "das_weight": "proxy.das_weight",
           "fast_train_steps": "proxy.fast_train_steps", "fast_train_lr": "proxy.fast_train_lr",
           "fast_train_batch_size": "proxy.fast_train_batch_size", "score_archs": "proxy.archs"}
