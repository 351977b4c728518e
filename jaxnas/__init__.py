"""jaxnas: one-shot neural architecture search in JAX/Flax, architectures as arrays."""
__version__ = "0.2.0"
