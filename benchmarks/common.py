"""What every benchmark script shares: a wall-clock timer and the machine/version record."""
from __future__ import annotations

import os
import platform
import re
import time

import jax
import torch


def timed(fn) -> float:
    """Seconds `fn()` takes (it must block until its results are ready)."""
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def cpu_info() -> dict:
    """The CPU's model name, its vector extensions and the cores this process may use (Linux): the
    same script gave different jaxnas/PyTorch ratios on VMs with different CPUs (BENCHMARKS.md)."""
    info = {"cpu_model": platform.processor() or platform.machine(), "cpu_simd": [],
            "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()}
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
    except OSError:
        return info
    model = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
    flags = re.search(r"^flags\s*:\s*(.+)$", text, re.MULTILINE)
    if model:
        info["cpu_model"] = model.group(1).strip()
    if flags:
        info["cpu_simd"] = sorted(f for f in flags.group(1).split() if re.fullmatch(r"avx\w*|fma|amx\w*", f))
    return info


def machine_info() -> dict:
    """Machine (CPU model, vector extensions, cores), thread count, versions, backend and date,
    recorded with every result."""
    return {"machine": platform.machine(), **cpu_info(), "torch_threads": torch.get_num_threads(),
            "jax": jax.__version__, "torch": torch.__version__, "backend": jax.default_backend(),
            "jax_device": jax.devices()[0].device_kind,
            "torch_cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
            "date": time.strftime("%Y-%m-%d")}
