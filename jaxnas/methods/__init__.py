"""Search methods, by name. Each module holds only what is particular to its method."""
from jaxnas.methods.abs import ABS
from jaxnas.methods.base import Method, SupernetMethod
from jaxnas.methods.pgnas import PGNAS
from jaxnas.methods.prune import Prune
from jaxnas.methods.rsps import RSPS
from jaxnas.methods.setn import SETN
from jaxnas.methods.train_arch import TrainArch
from jaxnas.methods.training_free import TrainingFree
from jaxnas.proxies.combine import NAMED
from jaxnas.proxies.scoring import PROXIES

# training-free searches: the best of `select_num` candidates by one proxy, or by a combination
# rule; `prune` prunes the whole cell by a rule (TE-NAS)
RULES = (*NAMED, "rule")
TRAINING_FREE = (*PROXIES, *RULES, "prune")
METHODS = {"rsps": RSPS, "setn": SETN, "abs": ABS, "pgnas": PGNAS, "train": TrainArch,
           **{name: TrainingFree.for_proxy(name) for name in PROXIES},
           **{name: TrainingFree.for_rule(name) for name in RULES}, "prune": Prune}


def get(name: str):
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; available: {', '.join(METHODS)}")
    return METHODS[name]


__all__ = ["ABS", "METHODS", "PGNAS", "RSPS", "RULES", "SETN", "TRAINING_FREE", "Method", "Prune",
           "SupernetMethod", "TrainArch", "TrainingFree", "get"]
