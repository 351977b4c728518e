"""SMASH's memory-bank space (`space.SPACE`), its geometry (`layout`) and sampler (`sampler`); its config
section in `config` (JAX-free: names here are imported on first use)."""
from jaxnas import registry

__getattr__, __dir__ = registry.lazy_exports(__name__, {
    "SPACE": "jaxnas.spaces.smash.space", "SmashSpace": "jaxnas.spaces.smash.space",
    "Layout": "jaxnas.spaces.smash.layout"})

__all__ = ["SPACE", "Layout", "SmashSpace"]
