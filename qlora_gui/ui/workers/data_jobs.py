"""The Data tab's work off the GUI thread: checking a dataset and encoding one row for the token view."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal

from ...core.data.dataset import DataReport, check_data
from ...core.data.intake import RawSplit
from ...core.data.token_view import TokenView, token_view
from ...core.model.model_files import load_tokenizer
from ...core.model.vision_model import is_vision_model, load_processor

_tokenizers: dict[str, Any] = {}  # per model folder: loading one takes a second, a check a few ms


class CheckSuperseded(Exception):
    """A newer check of the Data tab replaced this one: it stops rather than finish unseen."""


class CheckProgress(QObject):
    """Carries a check's progress from its worker thread to the GUI thread (a queued signal)."""

    moved = Signal(int, str, float)  # check generation, what is being done, share done

    def reporter(self, generation: int, current: Callable[[], int]) -> Callable[[str, float], None]:
        """The check's on_progress: emits, or stops the check once `current()` has moved past its generation."""

        def report(what: str, share: float) -> None:
            if current() != generation:
                raise CheckSuperseded(what)
            self.moved.emit(generation, what, share)

        return report


def _tokenizer(model: str) -> Any:
    """The model's tokenizer; a vision-language model's processor (its tokenizer and image processor)."""
    if model not in _tokenizers:
        path = Path(model)
        _tokenizers[model] = load_processor(path) if is_vision_model(path) else load_tokenizer(path)
    return _tokenizers[model]


def run_check(
    path: str,
    model: str | None,
    *,
    max_seq_length: int,
    mask_prompt: bool,
    batch_size: int,
    valid_fraction: float,
    seed: int,
    on_progress: Callable[[str, float], None] | None = None,
) -> tuple[DataReport, dict[str, RawSplit]]:
    """The report, and the checked rows for the token view: split with the run's seed, as training splits them."""
    result = check_data(
        path,
        _tokenizer(model) if model else None,
        max_seq_length=max_seq_length,
        mask_prompt=mask_prompt,
        batch_size=batch_size,
        valid_fraction=valid_fraction,
        seed=seed,
        on_progress=on_progress,
        vision=is_vision_model(Path(model)) if model else None,
    )
    return result.report, result.raw


def row_view(splits: dict[str, RawSplit], line: int, model: str, max_seq_length: int, mask_prompt: bool) -> TokenView:
    return token_view(splits, line, _tokenizer(model), max_seq_length=max_seq_length, mask_prompt=mask_prompt)


def file_excerpt(path: str, line: int, context: int = 3) -> tuple[str, int]:
    """Lines around `line` (1-based) as text, and the index of `line` within it. The file is read line by line
    only as far as needed, so a problem far into a large file shows too."""
    start = max(line - 1 - context, 0)
    shown = []
    try:
        with open(path, "rb") as f:
            for i, raw in enumerate(f):
                if i >= line + context:
                    break
                if i >= start:
                    text = raw.rstrip(b"\n").decode("utf-8", "backslashreplace").rstrip("\r")
                    shown.append(f"{i + 1:>6} | {text[:2000]}")
    except OSError as e:
        return f"(cannot read {path}: {e.strerror})", -1
    return "\n".join(shown), line - 1 - start
