"""Rows of different lengths in one flat array: a million rows cost two arrays, not a million objects.

`Ragged` reads like a list of arrays (len, [i], iteration), so batching and the token view index it as before,
while the values may stay in a file of the token cache: training then reads only the rows it batches, each
with one positioned read (not a memory map, whose pages would count in the process's memory as an epoch
touches them all).
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO, overload

import numpy as np


class FileValues:
    """A flat array in a file, read a slice at a time."""

    def __init__(self, path: Path, dtype: type, size: int):
        self.path, self.dtype, self.size = path, np.dtype(dtype), size
        self._fd = os.open(path, os.O_RDONLY)

    def read(self, start: int, stop: int) -> np.ndarray:
        n = self.dtype.itemsize
        data = os.pread(self._fd, (stop - start) * n, start * n)
        if len(data) != (stop - start) * n:
            raise OSError(f"{self.path} is shorter than its index says")
        return np.frombuffer(data, dtype=self.dtype)

    def whole(self) -> np.ndarray:
        """Every value, memory-mapped through the open file (its folder may have been renamed since)."""
        if not self.size:
            return self.read(0, 0)
        return np.frombuffer(mmap.mmap(self._fd, self.size * self.dtype.itemsize, access=mmap.ACCESS_READ), self.dtype)

    def __del__(self) -> None:
        try:
            os.close(self._fd)
        except (OSError, AttributeError):
            pass


class Ragged(Sequence[np.ndarray]):
    """Row i is values[starts[i]:starts[i + 1]]; the values in memory or in a file."""

    def __init__(self, values: np.ndarray | FileValues, starts: np.ndarray):
        self._values = values
        self.starts = starts  # int64, one more than there are rows

    @classmethod
    def from_file(cls, path: Path, dtype: type, starts: np.ndarray) -> Ragged:
        """Rows whose values are the file's; OSError when it does not hold them all."""
        size = int(starts[-1])
        if path.stat().st_size != size * np.dtype(dtype).itemsize:
            raise OSError(f"{path} is not whole")
        if not hasattr(os, "pread"):  # no positioned reads on this platform: a memory map
            return cls(np.memmap(path, dtype=dtype, mode="r", shape=(size,)) if size else np.zeros(0, dtype), starts)
        return cls(FileValues(path, dtype, size), starts)

    @property
    def values(self) -> np.ndarray:
        """Every row's values in one array (memory-mapped when they are in a file)."""
        return self._values.whole() if isinstance(self._values, FileValues) else self._values

    @property
    def in_file(self) -> bool:
        """The values stay in a file: each row is read when asked for."""
        return isinstance(self._values, FileValues)

    @property
    def total(self) -> int:
        return int(self.starts[-1])

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
        start, stop = int(self.starts[i]), int(self.starts[i + 1])
        if isinstance(self._values, FileValues):
            return self._values.read(start, stop)
        return self._values[start:stop]

    def rows_values(self, first: int, stop: int) -> np.ndarray:
        """Rows [first, stop) as one flat array: a block read at once, however the values are kept."""
        start, end = int(self.starts[first]), int(self.starts[stop])
        if isinstance(self._values, FileValues):
            return self._values.read(start, end)
        return self._values[start:end]

    def __iter__(self) -> Iterator[np.ndarray]:
        for i in range(len(self)):
            yield self[i]

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
        """The rows written, read from the file."""
        self._file.close()
        lengths = np.concatenate(self._lengths) if self._lengths else np.zeros(0, dtype=np.int64)
        return Ragged.from_file(self.path, self.dtype.type, np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64))
