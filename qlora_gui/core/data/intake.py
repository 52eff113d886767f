"""Read training data from disk and check every row, before any model is loaded.

Accepts a folder (train/valid/test .jsonl or .json, the mlx-lm layout), one
JSON Lines file, or one JSON file holding an array of rows. Files are parsed in
`json_rows.py`; here every row is checked against its format (`rows.py`) and
the splits are laid out. Each problem is a `Problem` with the file and line,
worded as "what is wrong, what to do".
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..train.config import default_of
from .formats import FORMATS, detect_format
from .json_rows import read_rows
from .problems import Problems
from .rows import RowFormat

SPLITS = ("train", "valid", "test")
DATA_SUFFIXES = (".jsonl", ".json")


@dataclass
class RawSplit:
    """The checked rows of one split, with the line each came from."""

    name: str
    file: str
    format: str | None
    rows: list[dict[str, Any]]
    lines: list[int]


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


# ---------------------------------------------------------------- checking


def check_rows(
    rows: list[tuple[int, Any]], name: str, split: str, options: IntakeOptions, problems: Problems
) -> RawSplit:
    """Check types and the format of every row; the file's format is its first row's."""
    fmt: RowFormat | None = None
    first_line = 0
    mixed_line, mixed_count = 0, 0
    mixed_fmt: RowFormat | None = None
    good: list[dict[str, Any]] = []
    good_lines: list[int] = []
    for line, row in rows:
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
        this = detect_format(row)
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
        for err in errors:
            problems.add(name, line, err)
        if not errors:
            good.append(row)
            good_lines.append(line)
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
    return RawSplit(split, name, fmt.name if fmt else None, good, good_lines)


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


RowsAndLines = tuple[list[dict], list[int]]  # rows and the file line of each


def split_rows(rows: list[dict], lines: list[int], fraction: float, seed: int) -> tuple[RowsAndLines, RowsAndLines]:
    """Seeded split into (train, valid); a row never lands in both."""
    n = len(rows)
    n_valid = int(round(n * fraction)) if fraction > 0 else 0
    if fraction > 0 and n >= 2:
        n_valid = min(max(n_valid, 1), n - 1)
    order = np.random.default_rng(seed).permutation(n)
    valid_idx = np.sort(order[:n_valid])
    train_idx = np.sort(order[n_valid:])
    pick = lambda idx: ([rows[i] for i in idx], [lines[i] for i in idx])  # noqa: E731
    return pick(train_idx), pick(valid_idx)


def read_dataset(path: str | Path, options: IntakeOptions | None = None) -> Intake:
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
                rows = read_rows(file, str(file), problems)
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
        rows = read_rows(path, shown, problems)
        splits["train"] = check_rows(rows, shown, "train", options, problems)
        if options.valid_fraction > 0:
            _hold_out_valid(splits, options)

    _check_across_splits(splits, options, problems)
    return Intake(shown, splits, problems, warnings)


def _hold_out_valid(splits: dict[str, RawSplit], options: IntakeOptions) -> None:
    train = splits["train"]
    (t_rows, t_lines), (v_rows, v_lines) = split_rows(train.rows, train.lines, options.valid_fraction, options.seed)
    splits["train"] = RawSplit("train", train.file, train.format, t_rows, t_lines)
    if v_rows:
        splits["valid"] = RawSplit("valid", train.file, train.format, v_rows, v_lines)


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
