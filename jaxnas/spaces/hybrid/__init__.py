"""PGNAS's hybrid multi-kernel network (`network`) behind the `Space` interface (`space.SPACE`)."""
from jaxnas.spaces.hybrid.network import KERNELS, NUM_KERNELS, HybridNetwork, HybridSuperNet, inherit
from jaxnas.spaces.hybrid.space import SPACE, HybridSpace

__all__ = ["KERNELS", "NUM_KERNELS", "SPACE", "HybridNetwork", "HybridSpace", "HybridSuperNet", "inherit"]
