"""Rows of a JSON Lines file kept as byte spans, read back on demand.

A checked split holds where each row is in its file (two int64 per row), not the row itself: a million rows
then cost 16 MB instead of a million dicts. Reading them all again goes through the file in large blocks.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO, overload

import numpy as np

BLOCK = 1 << 24  # bytes read at a time


def file_lines(f: BinaryIO, start: int) -> Iterator[tuple[int, int, bytes]]:
    """(line number, byte offset, bytes without the newline) from `start`, numbered from 1 there; the piece
    after the last newline comes last, as bytes.split(b"\\n") gives it."""
    f.seek(start)
    number, pos, carry = 0, start, b""
    while block := f.read(BLOCK):
        parts = (carry + block).split(b"\n")
        carry = parts.pop()
        for part in parts:
            number += 1
            yield number, pos, part
            pos += len(part) + 1
    yield number + 1, pos, carry


class FileRows(Sequence[Any]):
    """The JSON value at each byte span [starts[i], ends[i]) of a file, parsed when asked for."""

    def __init__(self, path: str | Path, starts: np.ndarray, ends: np.ndarray):
        self.path = str(path)
        self.starts, self.ends = starts, ends

    def __len__(self) -> int:
        return len(self.starts)

    @overload
    def __getitem__(self, i: int) -> Any: ...

    @overload
    def __getitem__(self, i: slice) -> FileRows: ...

    def __getitem__(self, i: int | slice) -> Any:
        if isinstance(i, slice):
            return FileRows(self.path, self.starts[i], self.ends[i])
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        with open(self.path, "rb") as f:
            f.seek(int(self.starts[i]))
            return json.loads(f.read(int(self.ends[i] - self.starts[i])).decode("utf-8"))

    def take(self, indices: np.ndarray) -> FileRows:
        return FileRows(self.path, self.starts[indices], self.ends[indices])

    def __iter__(self) -> Iterator[Any]:
        """Every row in order, reading the file a block at a time (spans go forward within a split)."""
        if not len(self):
            return
        with open(self.path, "rb") as f:
            block, base, last = b"", 0, int(self.ends.max())
            for start, end in zip(self.starts.tolist(), self.ends.tolist(), strict=True):
                if start < base or end > base + len(block):
                    base = start
                    f.seek(start)
                    block = f.read(max(min(BLOCK, last - start), end - start))  # no further than the last row
                yield json.loads(block[start - base : end - base].decode("utf-8"))
