"""A live chart's history with a bounded size: the newest reports exact, older ones merged evenly.

A run of 20,000 reported steps would otherwise keep 20,000 points per line and redraw them all four times a
second, slower and larger the longer it trains. Here the newest `recent` reports are kept as they came; each older
one is folded into a row that stands for `stride` consecutive reports (their mean, or their largest value where a
column is a peak). When those rows pass `capacity - recent`, neighbours merge in pairs and the stride doubles, so
the older history stays evenly spaced and the whole holds at most `capacity + 1` rows however long the run.
metrics.jsonl keeps every report.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

MEAN, MAX = "mean", "max"


class ChartHistory:
    # 2,000 points fill by about step 2,000, so a long run's window holds as many points (and costs as much to
    # redraw, and as much memory) in its first minutes as at its end; 4,000 filled only by step 4,000, and the
    # redraws were slower at the end of a 20,000-step soak than at its start.
    def __init__(self, merges: dict[str, str], capacity: int = 2000, recent: int = 500):
        """merges: each column's name and how reports merge in it (MEAN or MAX); the first column is the step."""
        if not 0 < recent < capacity - 1:
            raise ValueError("recent must be between 0 and capacity - 1")
        self.names = list(merges)
        self.is_max = [merges[name] == MAX for name in self.names]
        self.capacity, self.recent = capacity, recent
        self.clear()

    def clear(self) -> None:
        self.stride = 1  # reports per older row
        self._older: list[list[float]] = []  # rows of `stride` reports each, merged
        self._partial: list[float] | None = None  # the row being filled: sums (or maxima) of `_count` reports
        self._count = 0
        self._recent: deque[Sequence[float]] = deque()

    def __len__(self) -> int:
        return len(self._older) + (self._count > 0) + len(self._recent)

    def rows(self) -> list[Sequence[float]]:
        partial = [self._finish(self._partial, self._count)] if self._partial is not None else []
        return [*self._older, *partial, *self._recent]

    def __getitem__(self, name: str) -> list[float]:
        """One column, oldest first."""
        i = self.names.index(name)
        return [row[i] for row in self.rows()]

    def append(self, values: Sequence[float]) -> None:
        """One report, its values in the order of the columns."""
        if len(values) != len(self.names):
            raise ValueError(f"{len(values)} values for {len(self.names)} columns")
        self._recent.append(tuple(values))
        if len(self._recent) > self.recent:
            self._fold(self._recent.popleft())

    def keep_up_to(self, step: float) -> None:
        """Drop the rows after `step` (training went back to it); the rows kept stay merged as they were."""
        kept = [row for row in self.rows() if row[0] <= step]
        self.clear()
        for row in kept[-self.recent :]:
            self._recent.append(row)
        self._older = [list(row) for row in kept[: -self.recent or None]] if len(kept) > self.recent else []
        while len(self._older) > self.capacity - self.recent - 1:
            self._halve()

    def _fold(self, row: Sequence[float]) -> None:
        if self._partial is None:
            self._partial, self._count = list(row), 1
        else:
            self._partial = [
                max(a, b) if is_max else a + b for a, b, is_max in zip(self._partial, row, self.is_max, strict=True)
            ]
            self._count += 1
        if self._count >= self.stride:
            self._older.append(self._finish(self._partial, self._count))
            self._partial, self._count = None, 0
            if len(self._older) > self.capacity - self.recent - 1:
                self._halve()

    def _finish(self, sums: Sequence[float], count: int) -> list[float]:
        return [v if is_max else v / count for v, is_max in zip(sums, self.is_max, strict=True)]

    def _halve(self) -> None:
        """Neighbouring older rows merge: half as many, each standing for twice the reports."""
        older, kinds = self._older, self.is_max
        merged = [
            [max(a, b) if is_max else (a + b) / 2 for a, b, is_max in zip(older[i], older[i + 1], kinds, strict=True)]
            for i in range(0, len(older) - 1, 2)
        ]
        if len(older) % 2:
            merged.append(older[-1])
        self._older = merged
        self.stride *= 2
