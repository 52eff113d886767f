"""Prompts with reference answers from a run's own validation data, for the playground."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from ..config import default_of
from ..data.formats import FORMATS
from ..data.intake import IntakeOptions, read_dataset


@dataclass
class PromptSample:
    prompt: str
    system: str
    reference: str
    file: str
    line: int


def sample_from_row(row: dict[str, Any], fmt: str, file: str, line: int) -> PromptSample:
    """A playground prompt from one row of the named format, with where the row came from."""
    prompt, system, reference = FORMATS[fmt].sample(row)
    return PromptSample(prompt, system, reference, file, line)


class ValidationSamples:
    """The held-out rows of a run's data, split exactly as training split them."""

    def __init__(self, data: str, valid_fraction: float = default_of("valid_fraction"), seed: int = default_of("seed")):
        intake = read_dataset(data, IntakeOptions(valid_fraction=valid_fraction, seed=seed))
        split = intake.splits.get("valid") or intake.splits.get("test")
        self.format = intake.format
        self._split = split
        self._rng = random.Random(seed)
        self.error = ""
        if split is None or not split.rows or not split.format:
            self.error = (
                f"{data}: no validation rows to sample from"
                if intake.problems.count == 0
                else f"{data}: the data cannot be read now ({intake.problems.count} problem(s))"
            )

    @classmethod
    def of_run(cls, config: dict[str, Any]) -> ValidationSamples | None:
        """The validation rows of the run a saved config describes; None when it names no data."""
        if not config.get("data"):
            return None
        return cls(config["data"], *(config.get(k, default_of(k)) for k in ("valid_fraction", "seed")))

    def __len__(self) -> int:
        return len(self._split.rows) if self._split and not self.error else 0

    def pick(self) -> PromptSample | None:
        split = self._split
        if not len(self) or split is None or split.format is None:  # no rows: len() is 0 for all of these
            return None
        i = self._rng.randrange(len(self))
        return sample_from_row(split.rows[i], split.format, split.file, split.lines[i])
