"""The trainer's events as JSON lines on standard output, and back into the same dataclasses.

A rank started with `qlora-gui train --events-json` prints each event as `to_json_line()` writes it (one JSON
object per line; a NaN or infinity becomes null). The supervisor of a run on several machines reads rank 0's
lines and turns them back into events, so the console and the app show a run on several machines exactly as a
local one. A null read into a field declared as a plain float becomes NaN again.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import IO, ClassVar

from ..events import Event
from ..events import parse_event_line as parse_line


@dataclass
class LaunchNote(Event):
    """What a run on several machines does before its trainer reports: checking the hosts, copying, starting."""

    kind: ClassVar[str] = "launch"
    message: str

    def describe(self) -> str:
        return self.message


def parse_event_line(line: str) -> Event | None:
    """The event a rank's line holds, or None for any other line (a library's message, a partial line, a line
    without every field: not one of ours)."""
    return parse_line(line, complete=True)


class JsonLinePrinter:
    """An event callback that prints each event as one JSON line, flushed at once (a reader waits on it)."""

    def __init__(self, stream: IO[str] | None = None):
        self.stream = stream

    def __call__(self, event: Event) -> None:
        stream = self.stream or sys.stdout
        stream.write(event.to_json_line())
        stream.flush()
