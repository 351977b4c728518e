"""Search methods, by name (`jaxnas.registry.METHODS`). Each module holds only what is particular
to its method; its options, if any, in a JAX-free `<name>_config.py` beside it. Names are imported
on first use, so those config modules import without JAX."""
from jaxnas import registry

__getattr__, __dir__ = registry.lazy_exports(__name__, {
    "Method": "jaxnas.methods.base", "SupernetMethod": "jaxnas.methods.base", "ABS": "jaxnas.methods.abs",
    "NSE": "jaxnas.methods.nse", "PGNAS": "jaxnas.methods.pgnas", "Prune": "jaxnas.methods.prune",
    "RSPS": "jaxnas.methods.rsps", "SETN": "jaxnas.methods.setn", "TrainArch": "jaxnas.methods.train_arch",
    "TrainingFree": "jaxnas.methods.training_free"})


def get(name: str):
    """The method class called `name`."""
    if name not in registry.METHODS:
        raise ValueError(f"unknown method {name!r}; available: {', '.join(registry.METHODS)}")
    return registry.METHODS[name].load()


def all_methods() -> dict:
    """{name: Method class} of every registered method (each imported)."""
    return {name: get(name) for name in registry.METHODS}


__all__ = ["ABS", "NSE", "PGNAS", "RSPS", "SETN", "Method", "Prune", "SupernetMethod", "TrainArch",
           "TrainingFree", "all_methods", "get"]
