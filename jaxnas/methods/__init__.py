"""Search methods, by name. Each module holds only what is particular to its method."""
from jaxnas.methods.rsps import RSPS
from jaxnas.methods.setn import SETN
from jaxnas.methods.train_arch import TrainArch

METHODS = {"rsps": RSPS, "setn": SETN, "train": TrainArch}
# training-free searches (jaxnas.proxies.run.proxy_search): the best of `select_num` by a proxy
TRAINING_FREE = ("naswot", "das", "synflow", "snip", "grad_norm", "jacov")


def get(name: str):
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; available: {', '.join(sorted(METHODS) + list(TRAINING_FREE))}")
    return METHODS[name]
