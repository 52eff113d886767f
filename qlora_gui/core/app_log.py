"""Where the app writes what would otherwise be lost: uncaught exceptions (any thread), hard crashes
(faulthandler: segfaults, aborts) and, from the UI, Qt's warnings. Started from Finder, the app has no
terminal; this log is where its errors go, and Help > Open log folder shows it.

The folder is the platform's own (platformdirs): ~/Library/Logs/QLoRA Studio on macOS,
$XDG_STATE_HOME/QLoRA Studio/log (~/.local/state/…) on Linux, %LOCALAPPDATA%\\QLoRA Studio\\Logs on Windows.
"""

from __future__ import annotations

import faulthandler
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

LOG_NAME = "qlora-studio.log"
LOG_LIMIT = 2_000_000  # bytes; a longer log is set aside as qlora-studio.log.1 at the next start
_fault_file = None  # kept open for faulthandler, which writes with the file descriptor alone


def log_dir() -> Path:
    from platformdirs import user_log_dir

    return Path(user_log_dir("QLoRA Studio", appauthor=False))


def log_path() -> Path:
    return log_dir() / LOG_NAME


def write_log(text: str) -> Path | None:
    """Append a time-stamped entry; None when the log cannot be written (it never raises)."""
    try:
        path = log_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as f:
            f.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} ---\n{text.rstrip()}\n")
        return path
    except OSError:
        return None


def rotate_log(path: Path, limit: int = LOG_LIMIT) -> None:
    """Keep the log from growing without end: one over `limit` becomes NAME.1, replacing the one before."""
    try:
        if path.stat().st_size > limit:
            path.replace(path.with_name(path.name + ".1"))
    except OSError:
        pass  # no log yet, or none that can be moved: it is appended to as before


def log_exception(exc: BaseException, where: str = "") -> Path | None:
    head = f"unexpected error{' in ' + where if where else ''}:\n"
    return write_log(head + "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))


def install_crash_logging(on_error: Callable[[BaseException, Path | None], None] | None = None) -> None:
    """Log uncaught exceptions of every thread, and hard crashes, to the log; `on_error` is told of each
    uncaught exception (the UI shows a short message there, never a traceback)."""
    global _fault_file

    def hook(
        exc_type: type[BaseException], exc: BaseException | None, tb: TracebackType | None, where: str = ""
    ) -> None:
        if exc is None:
            return  # threading's hook may, in principle, pass no exception: nothing to log
        if issubclass(exc_type, KeyboardInterrupt):
            return sys.__excepthook__(exc_type, exc, tb)
        exc.__traceback__ = tb
        path = log_exception(exc, where)
        if on_error is not None:
            on_error(exc, path)

    sys.excepthook = hook
    threading.excepthook = lambda args: hook(
        args.exc_type, args.exc_value, args.exc_traceback, f"thread {args.thread.name if args.thread else '?'}"
    )
    try:
        path = log_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        if _fault_file is None:
            rotate_log(path)
            _fault_file = path.open("a", encoding="utf-8")
        faulthandler.enable(file=_fault_file, all_threads=True)
    except OSError:
        pass  # no log folder: crashes go where they would have gone
