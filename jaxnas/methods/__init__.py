"""Search methods, by name. Each module holds only what is particular to its method."""
from jaxnas.methods.rsps import RSPS
from jaxnas.methods.setn import SETN
from jaxnas.methods.train_arch import TrainArch

METHODS = {"rsps": RSPS, "setn": SETN, "train": TrainArch}


def get(name: str):
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; available: {', '.join(sorted(METHODS))}")
    return METHODS[name]
