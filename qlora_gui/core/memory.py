"""Memory: what MLX and the process use, against what the machine has."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import mlx.core as mx
import psutil

GB = 1024**3


@dataclass
class MemorySample:
    mlx_active: int
    mlx_peak: int
    mlx_cache: int
    rss: int
    total_ram: int

    def gb(self, name: str) -> float:
        return getattr(self, name) / GB


_run_peak = 0  # the run's peak before `reset_peak` started a new measurement


def reset_peak(keep_run_peak: bool = True) -> None:
    """Start measuring a new peak; `sample` goes on reporting the run's highest unless a run starts."""
    global _run_peak
    _run_peak = max(_run_peak, mx.get_peak_memory()) if keep_run_peak else 0
    mx.reset_peak_memory()


def sample() -> MemorySample:
    return MemorySample(
        mx.get_active_memory(),
        max(mx.get_peak_memory(), _run_peak),
        mx.get_cache_memory(),
        psutil.Process().memory_info().rss,
        psutil.virtual_memory().total,
    )


def total_ram() -> int:
    return psutil.virtual_memory().total


def clear_cache_if_above(threshold_bytes: int) -> bool:
    if mx.get_cache_memory() > threshold_bytes:
        mx.clear_cache()
        return True
    return False


_MLX_DEFAULT_LIMIT: int | None = None  # MLX's own memory limit, before any run set one


def apply_limits(memory_limit_gb: float | None) -> None:
    """Set MLX's memory limit as asked (MLX's default when not: an earlier run's stays behind otherwise), and
    the wired limit only where Metal exists."""
    global _MLX_DEFAULT_LIMIT
    if _MLX_DEFAULT_LIMIT is None:
        _MLX_DEFAULT_LIMIT = int(mx.get_memory_limit())
    mx.set_memory_limit(int(memory_limit_gb * GB) if memory_limit_gb else _MLX_DEFAULT_LIMIT)
    if mx.metal.is_available():
        # Keep the weights wired on Apple GPUs, as mlx-lm does, up to the recommended size.
        info = mx.device_info()
        limit = info.get("max_recommended_working_set_size")
        if limit:
            mx.set_wired_limit(int(limit))


def device_name() -> str:
    """The device MLX computes on, in words: "gpu (Apple M2 Max)", "gpu (NVIDIA H200)", "cpu (AMD EPYC)"."""
    kind = "gpu" if mx.default_device().type == mx.DeviceType.gpu else "cpu"
    try:
        name = str(mx.device_info().get("device_name", ""))
    except Exception:  # older MLX or a backend without device info
        name = ""
    return f"{kind} ({name})" if name else kind


def blas_in_use() -> str:
    """Which BLAS this process uses, for the run log."""
    if sys.platform == "darwin":
        return "Accelerate" + (" + Metal" if mx.metal.is_available() else "")
    try:
        with open(f"/proc/{os.getpid()}/maps", encoding="utf-8") as f:
            maps = f.read()
    except OSError:
        return "unknown"
    # numpy's wheels carry their own OpenBLAS (scipy_openblas); that one is not MLX's.
    libs = {line.rsplit("/", 1)[-1] for line in maps.splitlines() if "/" in line and "numpy" not in line}
    for name in ("libopenblas", "libmkl", "libblis"):
        if any(lib.startswith(name) for lib in libs):
            return name[3:]
    # The mlx-cpu wheels for Linux bundle a reference BLAS.
    return "reference BLAS (slow)"


def memory_budget() -> int:
    """What training may use: the GPU's recommended working set on Apple silicon, else all RAM."""
    if mx.metal.is_available():
        limit = mx.device_info().get("max_recommended_working_set_size")
        if limit:
            return int(limit)
    return total_ram()
