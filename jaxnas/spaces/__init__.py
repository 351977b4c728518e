"""Search spaces: architectures as arrays."""
from jaxnas.spaces import nb201

__all__ = ["nb201"]
