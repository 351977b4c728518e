"""SMASH's method section, `smash_search` (JAX-free: `jaxnas.config` reads it through
`jaxnas.registry`): the HyperNet's optimiser, the annealing and the selection protocol
(`jaxnas.methods.smash`), and its presets. The network's sizes are the space's section, `smash`.
"""
from __future__ import annotations

import dataclasses

from jaxnas.sections import check_positive


@dataclasses.dataclass(frozen=True)
class SmashSearch:
    NAME = "smash_search"
    b1: float = 0.5                    # Adam beta1 (SMASH.py: optim.Adam(betas=(0.5, 0.999), eps=1e-4))
    b2: float = 0.999                  # Adam beta2
    eps: float = 1e-4                  # Adam eps
    anneal: bool = True                # the sampler's budget and kernel bounds rise over the first half of
                                       # training (SMASH.py update_lr); False: the final bounds throughout
    random: int = 500                  # selection (evaluate.py): random architectures scored first,
    perturbed: int = 100               # ... then perturbations of the best of them,
    markov: int = 100                  # ... then a chain from the best so far that accepts improvements
    perturb_p: float = 0.05            # each draw of a layer redone with this probability (perturb_arch.py)

    def check(self):
        check_positive(self, ("random",))
        if self.perturbed < 0 or self.markov < 0:
            raise ValueError("smash_search.perturbed and smash_search.markov must be >= 0")
        if not 0 < self.perturb_p <= 1:
            raise ValueError(f"smash_search.perturb_p is a probability in (0, 1], got {self.perturb_p}")
        if not (0 <= self.b1 < 1 and 0 <= self.b2 < 1 and self.eps > 0):
            raise ValueError("smash_search needs 0 <= b1, b2 < 1 and eps > 0")


SECTION = SmashSearch
# ajbrock/SMASH train.py and utils.train_parser: 100 epochs, batch 50, Adam lr 1e-3 with a per-step
# cosine to 0, weight decay 1e-4 on the main network only (`smash.Method` masks the HyperNet), no
# gradient clipping, pad-4 crop + flip; 45k / 5k split, the last 5k held out; the SMASH score is the
# error on all 5,000 held-out images with BN's running statistics (evaluate.py: net.eval()).
_PROTOCOL = {"train.lr": 1e-3, "train.lr_min": 0.0, "train.weight_decay": 1e-4, "train.grad_clip": 0.0,
             "train.held_out": 0.1, "train.held_out_from": "end", "eval.bn": "running"}
PRESETS = {
    "paper": {**_PROTOCOL, "train.epochs": 100, "train.batch_size": 50, "eval.batch_size": 5000},
    # CPU-sized: 3 epochs on 6 % of CIFAR-10 (the engine's tiny data), the tiny network (the space's
    # tiny preset), the 300 held-out images, 40 + 10 + 10 candidates
    "tiny": {**_PROTOCOL, "train.batch_size": 50, "eval.batch_size": 300, "smash_search.random": 40,
             "smash_search.perturbed": 10, "smash_search.markov": 10},
    # NB201's search cells keep no running statistics (nb201.track_running_stats): batch statistics
    "paper/nb201": {"eval.bn": "batch"},
    "tiny/nb201": {"eval.bn": "batch"},
}
