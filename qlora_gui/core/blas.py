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


def openblas_env(gui: bool) -> dict[str, str] | None:
    """The environment for a re-run with OpenBLAS preloaded; None when there is nothing to do.

    With the window open, OpenBLAS gets one core fewer than the machine has: on our
    2-core test machine its threads on both cores pushed the GUI thread's p99 timer
    latency from 48 to 100 ms and cut a GUI-driven run to 0.82x of headless speed.
    """
    if os.environ.get(SKIP_ENV):
        return None
    lib = openblas_library()
    if lib is None or "openblas" in os.environ.get("LD_PRELOAD", ""):
        return None
    env = dict(os.environ)
    env["LD_PRELOAD"] = " ".join(x for x in (lib, env.get("LD_PRELOAD", "")) if x)
    env[SKIP_ENV] = "1"  # never loop
    if gui and "OPENBLAS_NUM_THREADS" not in env:
        env["OPENBLAS_NUM_THREADS"] = str(max(1, (os.cpu_count() or 2) - 1))
    return env


def reexec_with_openblas(argv: list[str], gui: bool) -> None:
    """Replace this process with one that preloads OpenBLAS; returns only when that is not needed."""
    env = openblas_env(gui)
    if env is None:
        return
    # In the PyInstaller bundle sys.executable is the app itself; from a checkout it is Python.
    command = [sys.executable] if getattr(sys, "frozen", False) else [sys.executable, "-m", "qlora_gui"]
    try:
        os.execve(sys.executable, [*command, *argv], env)
    except OSError:
        return  # keep running with the bundled BLAS; the run log says which one is in use
