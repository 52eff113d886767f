"""Use an optimized BLAS on Linux when one is installed.

The mlx-cpu wheels for Linux link a reference BLAS (about 6 GFLOP/s for a
2048x2048 matmul on our test machine); with OpenBLAS (Debian's
libopenblas0-pthread) loaded first the same matmul runs at about 340 GFLOP/s.
The entry point re-runs itself once with LD_PRELOAD set. macOS uses
Accelerate and Metal and needs nothing.
"""

from __future__ import annotations

import ctypes.util
import os
import sys

SKIP_ENV = "QLORA_GUI_NO_BLAS_REEXEC"  # set to 1 to keep the bundled BLAS; also marks a re-exec


def openblas_library() -> str | None:
    if not sys.platform.startswith("linux"):
        return None
    return ctypes.util.find_library("openblas")


def reexec_with_openblas(argv: list[str]) -> None:
    """Replace this process with one that preloads OpenBLAS; returns only when that is not needed."""
    if os.environ.get(SKIP_ENV) or getattr(sys, "frozen", False):
        return
    lib = openblas_library()
    if lib is None or "openblas" in os.environ.get("LD_PRELOAD", ""):
        return
    env = dict(os.environ)
    env["LD_PRELOAD"] = " ".join(x for x in (lib, env.get("LD_PRELOAD", "")) if x)
    env[SKIP_ENV] = "1"  # never loop
    try:
        os.execve(sys.executable, [sys.executable, "-m", "qlora_gui", *argv], env)
    except OSError:
        return  # keep running with the bundled BLAS; the run log says which one is in use
