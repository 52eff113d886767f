"""When Python's cyclic garbage collector may run: never over large long-lived data, nor in the middle of a load.

A full collection walks every tracked object while holding the interpreter lock, so with a 100,000-row dataset
in memory each one took 200-390 ms and stalled the window (bench/bench_gui.py: 31 of them in a 200-step run).
Rows, tokens and model weights hold no reference cycles; reference counting frees them when they are dropped.
"""

from __future__ import annotations

import functools
import gc
import threading
from collections.abc import Callable
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")
_lock = threading.Lock()
_paused = 0  # loads under way (in any thread) that asked the collector to wait


def keep_long_lived() -> None:
    """Exempt every object alive now from cyclic collection, after a large load (a dataset, a model)."""
    gc.freeze()


def without_cyclic_gc(load: Callable[P, R]) -> Callable[P, R]:
    """Run a load that makes many objects and no cycles with the cyclic collector paused, so that it does
    not walk them again and again while they are being made. Loads in several threads may overlap."""

    @functools.wraps(load)
    def paused(*args: P.args, **kwargs: P.kwargs) -> R:
        global _paused
        with _lock:
            _paused += 1
            gc.disable()
        try:
            return load(*args, **kwargs)
        finally:
            with _lock:
                _paused -= 1
                if _paused == 0:
                    gc.enable()

    return paused
