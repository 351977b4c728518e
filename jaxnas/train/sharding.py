"""Data-parallel sharding, the current form of pmap: a 1-D `data` mesh, sharded batches, replicated state.

Steps are plain `jax.jit` functions; XLA inserts the cross-device reductions (gradient means,
BatchNorm batch statistics over the global batch), so 1 and 8 devices compute the same step.
"""
from __future__ import annotations

import jax
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P


def make_mesh(num_devices: int | None = None) -> jax.sharding.Mesh:
    """A mesh with one `data` axis over the first `num_devices` devices (default: all)."""
    n = num_devices or jax.device_count()
    if n > jax.device_count():
        raise ValueError(f"asked for {n} devices, only {jax.device_count()} available")
    return jax.make_mesh((n,), ("data",), axis_types=(AxisType.Auto,), devices=jax.devices()[:n])


def replicated(mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def data_sharded(mesh) -> NamedSharding:
    """Leading (batch or candidate) axis split over the `data` axis."""
    return NamedSharding(mesh, P("data"))


def check_divisible(size: int, mesh, what: str = "batch_size") -> None:
    n = mesh.devices.size
    if size % n:
        raise ValueError(f"{what}={size} must be divisible by the number of devices ({n})")


def initialize_distributed() -> None:
    """Multi-host set-up (`--distributed`): coordinator and process ids come from the environment."""
    jax.distributed.initialize()
