"""Search spaces: architectures as pytrees of fixed-shape arrays (`base.Space`), by name."""
from jaxnas.spaces import hybrid, nb201
from jaxnas.spaces.base import CAPABILITIES, Space, has

SPACES = {"nb201": nb201.SPACE, "hybrid": hybrid.SPACE}


def get(name: str, cfg=None) -> Space:
    """The space called `name`, sized by `cfg` when given (`Space.configure`)."""
    if name not in SPACES:
        raise ValueError(f"unknown space {name!r}; available: {', '.join(sorted(SPACES))}")
    return SPACES[name] if cfg is None else SPACES[name].configure(cfg)


__all__ = ["CAPABILITIES", "SPACES", "Space", "get", "has", "hybrid", "nb201"]
