"""Background jobs: run a plain function off the GUI thread and get its result as a signal.

Every thread the UI starts is registered here, so tests can fail on one left
running. The QThread object (and so its signals) lives on the GUI thread; only
`run()` executes in the new thread. It stores its result, and the signals are
emitted on the GUI thread once QThread's own `finished` arrives: no Qt signal
carries a Python object across threads (PySide6 6.8+ can crash on those).
"""

from __future__ import annotations

import traceback
import weakref
from collections.abc import Callable
from typing import Any

import shiboken6
from PySide6.QtCore import QThread, Signal, Slot

_live: weakref.WeakSet[QThread] = weakref.WeakSet()
_keep: set[QThread] = set()  # a running job must not be garbage-collected


def register(thread: QThread) -> None:
    _live.add(thread)
    _keep.add(thread)
    thread.finished.connect(lambda: _keep.discard(thread))


def running_threads() -> list[QThread]:
    # A thread whose parent widget was deleted has no C++ object left, so it is not running.
    return [t for t in list(_live) if shiboken6.isValid(t) and t.isRunning()]


class FunctionJob(QThread):
    """Runs fn(*args) once; emits `done(result)` or `failed(message, details)`."""

    done = Signal(object)
    failed = Signal(str, str)

    def __init__(self, fn: Callable[..., Any], *args: Any, parent=None):
        super().__init__(parent)
        self._fn = fn
        self._args = args
        self._outcome: tuple = ()
        self.finished.connect(self._deliver)
        register(self)

    def run(self) -> None:
        try:
            self._outcome = ("done", self._fn(*self._args))
        except Exception as e:  # reported to the GUI as a message, never a crash
            self._outcome = ("failed", str(e) or type(e).__name__, traceback.format_exc())

    @Slot()
    def _deliver(self) -> None:
        if self._outcome and self._outcome[0] == "done":
            self.done.emit(self._outcome[1])
        elif self._outcome:
            self.failed.emit(self._outcome[1], self._outcome[2])


def start_job(
    fn: Callable[..., Any],
    *args: Any,
    on_done: Callable[[Any], None] | None = None,
    on_failed: Callable[[str, str], None] | None = None,
) -> FunctionJob:
    job = FunctionJob(fn, *args)
    if on_done:
        job.done.connect(on_done)
    if on_failed:
        job.failed.connect(on_failed)
    job.start()
    return job
