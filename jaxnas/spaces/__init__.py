"""Search spaces: architectures as pytrees of fixed-shape arrays (`base.Space`), by name
(`jaxnas.registry.SPACES`). Names are imported on first use, so a space's JAX-free config module
(`jaxnas/spaces/<name>/config.py`) imports without JAX."""
from jaxnas import registry

__getattr__, __dir__ = registry.lazy_exports(__name__, {
    "CAPABILITIES": "jaxnas.spaces.base", "Space": "jaxnas.spaces.base", "has": "jaxnas.spaces.base"})


def get(name: str, cfg=None):
    """The space called `name`, sized by `cfg` when given (`Space.configure`)."""
    if name not in registry.SPACES:
        raise ValueError(f"unknown space {name!r}; available: {', '.join(sorted(registry.SPACES))}")
    space = registry.SPACES[name].load()
    return space if cfg is None else space.configure(cfg)


def all_spaces() -> dict:
    """{name: Space} of every registered space (each imported)."""
    return {name: get(name) for name in registry.SPACES}


__all__ = ["CAPABILITIES", "Space", "all_spaces", "get", "has"]
