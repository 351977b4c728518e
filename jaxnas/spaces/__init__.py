"""Search spaces: architectures as pytrees of fixed-shape arrays (`base.Space`), by name."""
from jaxnas.spaces import nb201
from jaxnas.spaces.base import CAPABILITIES, Space, has

SPACES = {"nb201": nb201.SPACE}


def get(name: str) -> Space:
    if name not in SPACES:
        raise ValueError(f"unknown space {name!r}; available: {', '.join(sorted(SPACES))}")
    return SPACES[name]


__all__ = ["CAPABILITIES", "SPACES", "Space", "get", "has", "nb201"]
