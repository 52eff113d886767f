"""Prompts with reference answers from a run's own validation data, for the playground."""

from __future__ import annotations

import random
import re
from dataclasses import asdict, dataclass
from typing import Any

from .intake import IntakeOptions, read_dataset
from .rows import as_messages

# A last line such as "A: SELECT ..." or "Answer: ...": the label ends the prompt, the rest is the answer.
_LABELLED_LINE = re.compile(r"^(\s*[A-Za-z][\w ]{0,24}:)(.*)$", re.S)


@dataclass
class PromptSample:
    prompt: str
    system: str
    reference: str
    file: str
    line: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def split_text_row(text: str) -> tuple[str, str]:
    """(prompt, reference) for a plain-text row: up to its last line's label, else its first half."""
    head, sep, last = text.rpartition("\n")
    match = _LABELLED_LINE.match(last)
    if sep and match:
        return head + sep + match.group(1), match.group(2)
    words = text.split(" ")
    cut = max(1, len(words) // 2)
    return " ".join(words[:cut]), " " + " ".join(words[cut:])


def sample_from_row(row: dict[str, Any], fmt: str, file: str, line: int) -> PromptSample:
    if fmt == "text":
        prompt, reference = split_text_row(row["text"])
        return PromptSample(prompt, "", reference, file, line)
    turns = as_messages(row, fmt)
    last_answer = max((i for i, t in enumerate(turns) if t.get("role") == "assistant"), default=len(turns))
    before = turns[:last_answer]
    system = next((t.get("content") or "" for t in before if t.get("role") == "system"), "")
    prompt = next((t.get("content") or "" for t in reversed(before) if t.get("role") == "user"), "")
    reference = turns[last_answer].get("content") or "" if last_answer < len(turns) else ""
    return PromptSample(prompt, system, reference, file, line)


class ValidationSamples:
    """The held-out rows of a run's data, split exactly as training split them."""

    def __init__(self, data: str, valid_fraction: float = 0.1, seed: int = 0):
        intake = read_dataset(data, IntakeOptions(valid_fraction=valid_fraction, seed=seed))
        split = intake.splits.get("valid") or intake.splits.get("test")
        self.format = intake.format
        self._split = split
        self._rng = random.Random(seed)
        self.error = ""
        if split is None or not split.rows or not split.format:
            self.error = f"{data}: no validation rows to sample from" if intake.problems.count == 0 else \
                f"{data}: the data cannot be read now ({intake.problems.count} problem(s))"

    def __len__(self) -> int:
        return len(self._split.rows) if self._split and not self.error else 0

    def pick(self) -> PromptSample | None:
        if not len(self):
            return None
        i = self._rng.randrange(len(self))
        split = self._split
        return sample_from_row(split.rows[i], split.format, split.file, split.lines[i])
