"""The trainer's events as JSON lines on standard output, and back into the same dataclasses.

A rank started with `qlora-gui train --events-json` prints each event as `to_json_line()` writes it (one JSON
object per line; a NaN or infinity becomes null). The supervisor of a run on several machines reads rank 0's
lines and turns them back into events, so the console and the app show a run on several machines exactly as a
local one. A null read into a field declared as a plain float becomes NaN again.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from dataclasses import dataclass
from typing import IO, Any, ClassVar

from ..train.events import Event


@dataclass
class LaunchNote(Event):
    """What a run on several machines does before its trainer reports: checking the hosts, copying, starting."""

    kind: ClassVar[str] = "launch"
    message: str


def event_classes() -> dict[str, type[Event]]:
    """Every event class by its kind, including ones added later anywhere in the package."""
    found: dict[str, type[Event]] = {}
    pending = list(Event.__subclasses__())
    while pending:
        cls = pending.pop()
        found.setdefault(cls.kind, cls)
        pending += cls.__subclasses__()
    return found


def _restored(field: dataclasses.Field, value: Any) -> Any:
    if value is None and str(field.type).replace(" ", "") == "float":
        return math.nan  # written as null: JSON has no NaN
    return value


def parse_event_line(line: str) -> Event | None:
    """The event a line holds, or None for any other line (a library's message, a partial line)."""
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        row = json.loads(line)
    except ValueError:
        return None
    cls = event_classes().get(str(row.get("event"))) if isinstance(row, dict) else None
    if cls is None:
        return None
    values = {f.name: _restored(f, row[f.name]) for f in dataclasses.fields(cls) if f.name in row}
    try:
        return cls(**values)
    except TypeError:  # a required field missing: not one of our lines after all
        return None


class JsonLinePrinter:
    """An event callback that prints each event as one JSON line, flushed at once (a reader waits on it)."""

    def __init__(self, stream: IO[str] | None = None):
        self.stream = stream

    def __call__(self, event: Event) -> None:
        stream = self.stream or sys.stdout
        stream.write(event.to_json_line())
        stream.flush()
