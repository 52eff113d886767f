"""Rows of different lengths in one flat array: a million rows cost two arrays, not a million objects.

`Ragged` reads like a list of arrays (len, [i], iteration), so batching and the token view index it as before,
while the values may be a memory-mapped file of the token cache: training then reads only the rows it batches.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO, overload

import numpy as np


class Ragged(Sequence[np.ndarray]):
    """Row i is values[starts[i]:starts[i + 1]]."""

    def __init__(self, values: np.ndarray, starts: np.ndarray):
        self.values = values
        self.starts = starts  # int64, one more than there are rows

    @classmethod
    def from_rows(cls, rows: Sequence[np.ndarray], dtype: type) -> Ragged:
        lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
        values = np.concatenate([np.asarray(r, dtype=dtype) for r in rows]) if rows else np.zeros(0, dtype=dtype)
        return cls(values, np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64))

    def __len__(self) -> int:
        return len(self.starts) - 1

    @overload
    def __getitem__(self, i: int) -> np.ndarray: ...

    @overload
    def __getitem__(self, i: slice) -> list[np.ndarray]: ...

    def __getitem__(self, i: int | slice) -> np.ndarray | list[np.ndarray]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        return self.values[self.starts[i] : self.starts[i + 1]]

    def __iter__(self) -> Iterator[np.ndarray]:
        for i in range(len(self)):
            yield self.values[self.starts[i] : self.starts[i + 1]]

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.starts)


def row_positions(lengths: np.ndarray) -> np.ndarray:
    """Each flat position's index within its row."""
    total = int(lengths.sum())
    starts = np.cumsum(lengths) - lengths
    return np.arange(total, dtype=np.int64) - np.repeat(starts, lengths)


class RaggedWriter:
    """Appends rows a chunk at a time to a file (ids or masks), so a split never sits in memory whole."""

    def __init__(self, path: Path, dtype: type):
        self.path, self.dtype = path, np.dtype(dtype)
        self._file: BinaryIO = open(path, "wb")  # noqa: SIM115 - closed in finish()
        self._lengths: list[np.ndarray] = []

    def append(self, values: np.ndarray, lengths: np.ndarray) -> None:
        self._file.write(np.ascontiguousarray(values, dtype=self.dtype).tobytes())
        self._lengths.append(lengths.astype(np.int64))

    def finish(self) -> Ragged:
        """The rows written, memory-mapped from the file."""
        self._file.close()
        lengths = np.concatenate(self._lengths) if self._lengths else np.zeros(0, dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        total = int(starts[-1])
        values = np.memmap(self.path, dtype=self.dtype, mode="r", shape=(total,)) if total else np.zeros(0, self.dtype)
        return Ragged(values, starts)
