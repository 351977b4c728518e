"""Data-parallel sharding, the current form of pmap: a 1-D `data` mesh, sharded batches, replicated state.

Steps are plain `jax.jit` functions; XLA inserts the cross-device reductions (gradient means,
BatchNorm batch statistics over the global batch), so 1 and 8 devices compute the same step.
"""
from __future__ import annotations

import os

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


DISTRIBUTED_ENV = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")


def initialize_distributed() -> None:
    """Multi-host set-up (`--distributed`): the coordinator and process ids come from a cluster JAX
    detects (SLURM, Open MPI, Kubernetes, Cloud TPU) or from DISTRIBUTED_ENV on every process;
    ValueError naming those variables when neither gives them."""
    kw = {}
    for var, arg in (("JAX_NUM_PROCESSES", "num_processes"), ("JAX_PROCESS_ID", "process_id")):
        if os.environ.get(var, "").strip():
            try:
                kw[arg] = int(os.environ[var])
            except ValueError:
                raise ValueError(f"--distributed: {var} must be an integer, "
                                 f"got {os.environ[var]!r}") from None
    try:
        jax.distributed.initialize(**kw)
    except (ValueError, TypeError, RuntimeError) as err:
        raise ValueError(f"--distributed: {err} Outside a cluster JAX detects (SLURM, Open MPI, Kubernetes, "
                         f"Cloud TPU) set {', '.join(f'{v}=...' for v in DISTRIBUTED_ENV)} on every process "
                         "(e.g. JAX_COORDINATOR_ADDRESS=host0:1234 JAX_NUM_PROCESSES=2 "
                         "JAX_PROCESS_ID=0)") from None
