"""Read training data from disk and check every row, before any model is loaded.

Accepts a folder (train/valid/test .jsonl or .json, the mlx-lm layout), one
JSON Lines file, or one JSON file holding an array of rows. Files are parsed in
`json_rows.py`; here every row is checked against its format (`rows.py`) and
the splits are laid out. Each problem is a `Problem` with the file and line,
worded as "what is wrong, what to do".
"""

from __future__ import annotations

import json
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..config import default_of
from .file_rows import FileRows
from .formats import FORMATS, detect_format
from .json_rows import OnProgress, Span, stream_rows
from .media import media_parts, text_model_refusal
from .problems import Problems
from .rows import RowFormat, TextFormat, TurnsFormat
from .vision_rows import VISION

SPLITS = ("train", "valid", "test")
DATA_SUFFIXES = (".jsonl", ".json")


@dataclass
class RawSplit:
    """The checked rows of one split, with the line each came from. Rows of a JSON Lines file stay in the file
    (`FileRows`); `keys` (a hash of each row's content, key order aside) and `char_lengths` are made while
    checking, so repeats and lengths need no second read."""

    name: str
    file: str
    format: str | None
    rows: Sequence[dict[str, Any]]
    lines: list[int]
    keys: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    char_lengths: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    def take(self, indices: np.ndarray) -> RawSplit:
        """These rows (ascending indices), as a split of the same file."""
        rows = self.rows.take(indices) if isinstance(self.rows, FileRows) else [self.rows[i] for i in indices]
        lines = [self.lines[i] for i in indices]
        return RawSplit(self.name, self.file, self.format, rows, lines, self.keys[indices], self.char_lengths[indices])


def row_key(row: dict[str, Any]) -> int:
    """A hash of the row's content, key order aside (a text row: of its text, the cheap common case)."""
    if len(row) == 1 and isinstance(row.get("text"), str):
        return hash(row["text"])
    return hash(json.dumps(row, sort_keys=True, ensure_ascii=False, separators=(",", ":")))


@dataclass
class Intake:
    source: str
    splits: dict[str, RawSplit]
    problems: Problems
    warnings: list[str]

    @property
    def format(self) -> str | None:
        for split in self.splits.values():
            if split.format:
                return split.format
        return None


@dataclass
class IntakeOptions:
    valid_fraction: float = default_of("valid_fraction")
    seed: int = default_of("seed")
    mask_prompt: bool = default_of("mask_prompt")
    batch_size: int = 1
    # Whether the model sees pictures: False (a text model) refuses every row that carries any (media.py);
    # None (no model chosen yet) checks picture rows as a vision-language model would take them.
    vision: bool | None = None


# ---------------------------------------------------------------- checking


def check_rows(
    rows: Iterable[tuple[int, Any, Span]], name: str, split: str, options: IntakeOptions, problems: Problems
) -> RawSplit:
    """Check types and the format of every row as they stream by; the file's format is its first row's."""
    fmt: RowFormat | None = None
    first_line = 0
    mixed_line, mixed_count = 0, 0
    mixed_fmt: RowFormat | None = None
    good: list[dict[str, Any]] = []  # rows without a span (a JSON array file's)
    good_lines: list[int] = []
    spans, keys, char_lengths = array("q"), array("q"), array("q")
    by_shape: dict[tuple, TextFormat | TurnsFormat | None] = {}
    for line, row, span in rows:
        if not isinstance(row, dict):
            kind = {"str": "string", "int": "number", "float": "number", "bool": "true/false", "NoneType": "null"}.get(
                type(row).__name__, type(row).__name__
            )
            problems.add(
                name,
                line,
                f'the row is a JSON {kind}, not an object; write each row as {{"text": ...}} or another format',
            )
            continue
        media = media_parts(row)
        if media:  # a row with pictures is told by its content parts as well as its keys
            this = detect_format(row)
            refusal = _media_refusal(row, media, this, options.vision)
            if refusal is not None:  # never trained silently as text
                problems.add(name, line, refusal)
                continue
        else:  # a format is told by the keys alone: rows of one file mostly share them
            shape = tuple(row)
            this = by_shape[shape] if shape in by_shape else by_shape.setdefault(shape, detect_format(row))
        if this is None:
            problems.add(name, line, _unknown_keys_message(row))
            continue
        if fmt is None:
            fmt, first_line = this, line
        elif this is not fmt:
            mixed_count += 1
            if mixed_fmt is None:
                mixed_line, mixed_fmt = line, this
            continue
        errors = this.check(row, options.mask_prompt)
        if not errors and this is VISION:
            errors = VISION.check_files(row, Path(name).parent)
        for err in errors:
            problems.add(name, line, err)
        if not errors:
            if span is None:
                good.append(row)
            else:
                spans.extend(span)
            good_lines.append(line)
            keys.append(row_key(row))
            char_lengths.append(this.char_length(row))
    if fmt is not None and mixed_fmt is not None:
        problems.add(
            name,
            mixed_line,
            f"this row is {mixed_fmt.name} data ({mixed_fmt.keys_shown}) but the file is {fmt.name} data "
            f"({fmt.keys_shown}, from line {first_line}); {mixed_count} row(s) differ. Use one format per file.",
        )
    # Said once, on train, not once per file.
    if fmt is not None and not fmt.can_mask_prompt and options.mask_prompt and split == "train":
        problems.add(
            name,
            first_line,
            "'train on completions only' needs prompt/completion or chat rows; "
            f"{fmt.name} rows have no prompt to mask. Turn it off or convert the rows.",
        )
    kept: Sequence[dict[str, Any]] = good
    if spans:
        ends = np.frombuffer(spans, dtype=np.int64).reshape(-1, 2)
        kept = FileRows(name, ends[:, 0].copy(), ends[:, 1].copy())
    as_array = lambda a: np.frombuffer(a, dtype=np.int64).copy()  # noqa: E731
    return RawSplit(split, name, fmt.name if fmt else None, kept, good_lines, as_array(keys), as_array(char_lengths))


def _media_refusal(row: dict[str, Any], parts: list, fmt: RowFormat | None, vision: bool | None) -> str | None:
    """Why a row that carries media cannot be trained as it is, or None (a picture row for a model that sees
    pictures, or for a model not chosen yet)."""
    if vision is False:
        return text_model_refusal(row)
    other = next(((kind, where) for kind, where in parts if kind != "image"), None)
    if other is not None:
        kind, where = other
        return f"the row carries {kind} ({where}); only pictures are trained here. Remove the row or its {kind}"
    if fmt is not VISION:
        return (
            "the row carries images but no 'messages' (or 'question' and 'answer') to go with them; write "
            '{"images": [...], "messages": [...]} rows'
        )
    return None


_RENAMES = {
    (
        "instruction",
        "output",
    ): "Alpaca rows: join 'instruction' and 'input' into 'prompt' and rename 'output' to 'completion'",
    ("input", "output"): "rename 'input' to 'prompt' and 'output' to 'completion'",
    ("question", "answer"): "rename 'question' to 'prompt' and 'answer' to 'completion'",
    ("conversations",): "ShareGPT rows: rename 'conversations' to 'messages' with 'role'/'content' turns",
    ("prompt",): "add a 'completion' next to 'prompt'",
    ("completion",): "add a 'prompt' next to 'completion'",
}


def _unknown_keys_message(row: dict) -> str:
    keys = ", ".join(repr(k) for k in list(row)[:8]) or "none"
    expected = "; ".join("{" + ", ".join(f'"{k}"' for k in f.keys) + "}" for f in FORMATS.values())
    hint = next((h for ks, h in _RENAMES.items() if all(k in row for k in ks)), "rename the keys")
    return f"no known format: keys found {keys}; expected {expected}. Hint: {hint}"


# ---------------------------------------------------------------- layout


def _find_split_file(folder: Path, split: str) -> Path | None:
    for suffix in DATA_SUFFIXES:
        candidate = folder / f"{split}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def split_indices(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split of n rows into (train, valid) indices, each ascending; a row never lands in both."""
    n_valid = int(round(n * fraction)) if fraction > 0 else 0
    if fraction > 0 and n >= 2:
        n_valid = min(max(n_valid, 1), n - 1)
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[n_valid:]), np.sort(order[:n_valid])


def read_dataset(
    path: str | Path, options: IntakeOptions | None = None, on_progress: OnProgress | None = None
) -> Intake:
    """Read and check a dataset folder or file. Never raises for bad data."""
    options = options or IntakeOptions()
    path = Path(path).expanduser()
    problems = Problems()
    warnings: list[str] = []
    splits: dict[str, RawSplit] = {}
    shown = str(path)

    if not path.exists():
        problems.add(shown, 1, "no such file or folder; check the path")
        return Intake(shown, splits, problems, warnings)

    if path.is_dir():
        files = {s: _find_split_file(path, s) for s in SPLITS}
        if files["train"] is None:
            present = ", ".join(sorted(p.name for p in path.iterdir())[:10]) or "nothing"
            problems.add(
                shown,
                1,
                f"the folder has no train.jsonl (found: {present}); a data folder holds "
                "train.jsonl and optionally valid.jsonl and test.jsonl",
            )
            return Intake(shown, splits, problems, warnings)
        for split, file in files.items():
            if file is not None:
                rows = stream_rows(file, str(file), problems, on_progress)
                splits[split] = check_rows(rows, str(file), split, options, problems)
        if "valid" not in splits and options.valid_fraction > 0:
            _hold_out_valid(splits, options)
            warnings.append(
                f"no valid.jsonl: held out {options.valid_fraction:.0%} of train as validation (seed {options.seed})"
            )
    else:
        if path.suffix.lower() not in DATA_SUFFIXES:
            problems.add(
                shown, 1, f"'{path.suffix or path.name}' is not a data file; give a .jsonl or .json file or a folder"
            )
            return Intake(shown, splits, problems, warnings)
        rows = stream_rows(path, shown, problems, on_progress)
        splits["train"] = check_rows(rows, shown, "train", options, problems)
        if options.valid_fraction > 0:
            _hold_out_valid(splits, options)

    _check_across_splits(splits, options, problems)
    return Intake(shown, splits, problems, warnings)


def _hold_out_valid(splits: dict[str, RawSplit], options: IntakeOptions) -> None:
    train = splits["train"]
    train_idx, valid_idx = split_indices(len(train.rows), options.valid_fraction, options.seed)
    splits["train"] = train.take(train_idx)
    if len(valid_idx):
        splits["valid"] = train.take(valid_idx)
        splits["valid"].name = "valid"


def _check_across_splits(splits: dict[str, RawSplit], options: IntakeOptions, problems: Problems) -> None:
    train = splits.get("train")
    if train is None:
        return
    for split in splits.values():
        if (
            split is not train
            and split.format
            and train.format
            and split.format != train.format
            and split.file != train.file
        ):
            problems.add(
                split.file,
                split.lines[0] if split.lines else 1,
                f"{split.name} rows are {split.format} data but train rows are {train.format} data; use one format",
            )
    if problems.count == 0 and len(train.rows) < options.batch_size:
        line = train.lines[-1] if train.lines else 1
        problems.add(
            train.file,
            line,
            f"only {len(train.rows)} training row(s), fewer than one batch of "
            f"{options.batch_size}; add rows or lower the batch size",
        )
