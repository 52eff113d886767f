"""Proof that MLX computes where it will train: a small matmul, evaluated and checked.

`qlora-gui --smoke-test` (and so the bundle test) runs it before the window opens. On macOS training runs on
the GPU, which MLX reaches through its Metal kernels in mlx.metallib, found beside the libmlx that was loaded:
a bundle that misplaces either fails here, naming the file it expected, instead of in a user's first run.
Elsewhere it checks MLX's default device (the CPU, or CUDA).
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType

from .errors import UserError

SIZE = 64  # ones(64, 64) @ ones(64, 64) is 64 everywhere: the sum is exact in float32


class ComputeError(UserError):
    """MLX cannot compute on the device it should; the message names the file or setting to check."""

    exit_code = 1


def metallib_path(mx: ModuleType) -> Path:
    """Where MLX looks for its Metal kernels: mlx/lib/ beside the extension (where libmlx is)."""
    return Path(mx.__file__ or "mlx").parent / "lib" / "mlx.metallib"


def _device_name(mx: ModuleType) -> str:
    try:
        return str(mx.device_info().get("device_name", ""))
    except (AttributeError, RuntimeError):
        return ""  # older MLX, or a backend that cannot say: the check itself does not need the name


def check_compute(mx: ModuleType | None = None, platform: str = sys.platform) -> str:
    """Evaluate a matmul on the training device and check its result; return one line saying what ran.
    Raises ComputeError, naming the metallib on macOS, when MLX cannot."""
    if mx is None:
        import mlx.core

        mx = mlx.core
    metallib = metallib_path(mx)
    where = f"{metallib} ({'present' if metallib.is_file() else 'missing'})"
    if platform == "darwin" and not mx.metal.is_available():
        raise ComputeError(
            f"MLX cannot use the GPU: Metal is not available (MLX needs Apple silicon, and a virtual machine may "
            f"have no Metal). Its kernels are expected in {where}: reinstall MLX (pip install --force-reinstall "
            "mlx) or rebuild the app (make app)"
        )
    device = mx.Device(mx.gpu, 0) if platform == "darwin" else mx.default_device()
    kind = f"{device.type.name}{' (Metal)' if platform == 'darwin' else ''}"
    try:
        a = mx.ones((SIZE, SIZE))
        total = mx.sum(mx.matmul(a, a, stream=device), stream=device)
        mx.eval(total)
        value = float(total.item())
    except (RuntimeError, ValueError) as e:  # "Failed to load the default metallib", a missing backend
        hint = f" Its Metal kernels are expected in {where}." if platform == "darwin" else ""
        raise ComputeError(f"MLX could not compute on the {kind}: {e}.{hint}") from e
    if value != SIZE**3:
        raise ComputeError(f"MLX computed a wrong result on the {kind}: {value:g} instead of {SIZE**3}")
    name = _device_name(mx)
    return f"compute: {kind}{f' on {name}' if name else ''}, MLX {mx.__version__}: {SIZE}x{SIZE} matmul checked"
