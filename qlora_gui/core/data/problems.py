"""Problems found in the data, each on its file and line, worded as "what is wrong, what to do"."""

from __future__ import annotations

from dataclasses import dataclass, field

MAX_KEPT_PROBLEMS = 1000  # count beyond this, but don't hold them all in memory


@dataclass(frozen=True)
class Problem:
    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


@dataclass
class Problems:
    """Collects problems up to a cap and counts the rest."""

    items: list[Problem] = field(default_factory=list)
    count: int = 0

    def add(self, file: str, line: int, message: str) -> None:
        self.count += 1
        if len(self.items) < MAX_KEPT_PROBLEMS:
            self.items.append(Problem(file, line, message))

    def extend(self, other: Problems) -> None:
        for p in other.items:
            self.add(p.file, p.line, p.message)
        self.count += other.count - len(other.items)
