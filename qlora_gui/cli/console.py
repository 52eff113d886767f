"""The terminal, as every subcommand writes to it: results on standard output, notes, progress and errors on
standard error (so a result can be piped), and Ctrl-C that first stops a run with a checkpoint."""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any


def note(text: str) -> None:
    """A line about the work (what it does now, what it found), on standard error, at once."""
    print(text, file=sys.stderr, flush=True)


def progress(fraction: float, message: str) -> None:
    """A long job's progress line: `[ 40%] writing tensors`."""
    note(f"[{fraction:4.0%}] {message}")


def error(message: str, lines: Iterable[str] = ()) -> None:
    """`error: MESSAGE`, then the lines that say where (FILE:LINE: ...), on standard error."""
    print(f"error: {message}", file=sys.stderr)
    for line in lines:
        print(line, file=sys.stderr)


class Interrupted:
    """Whether Ctrl-C was pressed during a `ctrl_c_stops` block (exit code 130 then)."""

    def __init__(self) -> None:
        self.pressed = False

    def __bool__(self) -> bool:
        return self.pressed


@contextmanager
def ctrl_c_stops(stop: Callable[[], None], again: Callable[[], None], says: str) -> Iterator[Interrupted]:
    """Within the block the first Ctrl-C says `says` and calls `stop` (finish the step, save a checkpoint); a
    second calls `again` (end at once). The handler before it is put back after the block."""
    interrupted = Interrupted()

    def on_sigint(signum: int, frame: Any) -> None:
        if interrupted:
            again()
            return
        interrupted.pressed = True
        note(f"\n{says}")
        stop()

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield interrupted
    finally:
        signal.signal(signal.SIGINT, previous)


def abort() -> None:
    """A second Ctrl-C on a run in this process: out at once (report_errors says "stopped", exit 130)."""
    raise KeyboardInterrupt
