"""What every benchmark script shares: a wall-clock timer and the machine/version record."""
from __future__ import annotations

import platform
import time

import jax
import torch


def timed(fn) -> float:
    """Seconds `fn()` takes (it must block until its results are ready)."""
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def machine_info() -> dict:
    """Machine, thread count, versions, backend and date, recorded with every result."""
    return {"machine": platform.processor() or platform.machine(), "torch_threads": torch.get_num_threads(),
            "jax": jax.__version__, "torch": torch.__version__, "backend": jax.default_backend(),
            "jax_device": jax.devices()[0].device_kind,
            "torch_cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
            "date": time.strftime("%Y-%m-%d")}
