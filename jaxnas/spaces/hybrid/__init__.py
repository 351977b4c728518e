"""PGNAS's hybrid multi-kernel network (`network`) behind the `Space` interface (`space.SPACE`); its
config section in `config` (JAX-free: names here are imported on first use)."""
from jaxnas import registry

__getattr__, __dir__ = registry.lazy_exports(__name__, {
    **{name: "jaxnas.spaces.hybrid.network" for name in ("KERNELS", "NUM_KERNELS", "HybridNetwork",
                                                         "HybridSuperNet", "inherit")},
    "SPACE": "jaxnas.spaces.hybrid.space", "HybridSpace": "jaxnas.spaces.hybrid.space"})

__all__ = ["KERNELS", "NUM_KERNELS", "SPACE", "HybridNetwork", "HybridSpace", "HybridSuperNet", "inherit"]
