"""Read training data from disk and check every row, before any model is loaded.

Accepts a folder (train/valid/test .jsonl or .json, the mlx-lm layout), one
JSON Lines file, or one JSON file holding an array of rows. Each problem is a
`Problem` with the file and line, worded as "what is wrong, what to do".
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .rows import FORMAT_KEYS, check_row, row_format

SPLITS = ("train", "valid", "test")
DATA_SUFFIXES = (".jsonl", ".json")
MAX_KEPT_PROBLEMS = 1000  # count beyond this, but don't hold them all in memory

_BINARY_SIGNATURES = {
    b"PAR1": "a Parquet file",
    b"PK\x03\x04": "a ZIP archive (or .xlsx)",
    b"\x1f\x8b": "a gzip archive",
    b"SQLite format 3": "a SQLite database",
    b"%PDF": "a PDF document",
    b"\x89PNG": "a PNG image",
}


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

    def extend(self, other: "Problems") -> None:
        for p in other.items:
            self.add(p.file, p.line, p.message)
        self.count += other.count - len(other.items)


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
    valid_fraction: float = 0.1
    seed: int = 0
    mask_prompt: bool = False
    batch_size: int = 1


# ---------------------------------------------------------------- reading


def _decode_lines(raw: bytes, name: str, problems: Problems) -> list[tuple[int, str]] | None:
    """Split bytes into (line number, text), tolerating a BOM and CRLF."""
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        problems.add(name, 1, "the file is UTF-16 text; re-save it as UTF-8")
        return None
    for magic, what in _BINARY_SIGNATURES.items():
        if raw.startswith(magic):
            problems.add(name, 1, f"this is {what}, not JSON text; export the data as JSON Lines (.jsonl)")
            return None
    nul = raw.find(b"\x00")
    if nul >= 0:
        line = raw.count(b"\n", 0, nul) + 1
        problems.add(name, line, f"binary data (a NUL byte at byte offset {nul}); give a text file with one JSON object per line")
        return None
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    out = []
    for number, chunk in enumerate(raw.split(b"\n"), start=1):
        if chunk.endswith(b"\r"):
            chunk = chunk[:-1]
        try:
            out.append((number, chunk.decode("utf-8")))
        except UnicodeDecodeError as e:
            column = len(chunk[: e.start].decode("utf-8", "replace")) + 1
            guess = ""
            try:
                chunk.decode("cp1252")
                guess = " It looks like Windows-1252/Latin-1 text."
            except UnicodeDecodeError:
                pass
            problems.add(
                name, number,
                f"byte 0x{chunk[e.start]:02X} at column {column} is not UTF-8.{guess} Re-save the file as UTF-8.",
            )
    return out


def _parse_json_lines(lines: list[tuple[int, str]], name: str, problems: Problems) -> list[tuple[int, Any]]:
    rows: list[tuple[int, Any]] = []
    nonblank = [(n, t) for n, t in lines if t.strip()]
    last_line = nonblank[-1][0] if nonblank else 0
    for number, text in nonblank:
        try:
            rows.append((number, json.loads(text)))
        except json.JSONDecodeError as e:
            stripped = text.strip()
            if e.msg == "Extra data":
                problems.add(name, number, f"more than one JSON value on this line (extra text at column {e.colno}); put one row per line")
            elif number == last_line and rows and not stripped.startswith("{"):
                problems.add(name, number, f"trailing text after the last row: {stripped[:40]!r}; delete it")
            else:
                problems.add(name, number, f"invalid JSON at column {e.colno}: {e.msg}; each line must be one complete JSON object")
    return rows


def _parse_json_array(text: str, name: str, problems: Problems) -> list[tuple[int, Any]]:
    """Walk a JSON array element by element so every row keeps its line number."""
    decoder = json.JSONDecoder()
    rows: list[tuple[int, Any]] = []

    def skip_ws(i: int) -> int:
        while i < len(text) and text[i] in " \t\r\n":
            i += 1
        return i

    def line_of(i: int) -> int:
        return text.count("\n", 0, i) + 1

    i = skip_ws(text.index("[") + 1)
    if i < len(text) and text[i] == "]":
        i += 1
    else:
        while True:
            try:
                value, end = decoder.raw_decode(text, i)
            except json.JSONDecodeError as e:
                problems.add(name, e.lineno, f"invalid JSON at column {e.colno}: {e.msg}")
                return rows
            rows.append((line_of(i), value))
            i = skip_ws(end)
            if i < len(text) and text[i] == ",":
                i = skip_ws(i + 1)
                continue
            if i < len(text) and text[i] == "]":
                i += 1
                break
            problems.add(name, line_of(i), "expected ',' or ']' between rows of the JSON array")
            return rows
    i = skip_ws(i)
    if i < len(text):
        problems.add(name, line_of(i), f"trailing text after the closing ']': {text[i:i + 40].strip()!r}; delete it")
    return rows


def _is_array_file(path: Path, first_line: str) -> bool:
    """A .json file starting with '[' is an array of rows; so is a .jsonl whose first
    line is not a whole JSON value (a pretty-printed array under the wrong name)."""
    if path.suffix.lower() == ".json":
        return True
    try:
        json.loads(first_line)
    except json.JSONDecodeError:
        return True
    return False


def read_rows(path: Path, name: str, problems: Problems) -> list[tuple[int, Any]]:
    """Parse one file into (line, value) pairs; the content decides JSON Lines vs array."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        problems.add(name, 1, f"cannot read the file ({e.strerror}); check that it exists and is readable")
        return []
    lines = _decode_lines(raw, name, problems)
    if lines is None:
        return []
    first = next(((n, t.lstrip()) for n, t in lines if t.strip()), None)
    if first is None:
        what = "empty" if not raw.strip(b"\xef\xbb\xbf") else "only blank lines"
        problems.add(name, 1, f"the file is {what}; it needs at least one row")
        return []
    if first[1].startswith("[") and _is_array_file(path, first[1]):
        return _parse_json_array("\n".join(t for _, t in lines), name, problems)
    local = Problems()
    rows = _parse_json_lines(lines, name, local)
    if local.count and first[1].rstrip() == "{":
        # A pretty-printed single object: JSON Lines parsing can't help, say what it is.
        try:
            whole = json.loads("\n".join(t for _, t in lines))
        except json.JSONDecodeError:
            whole = None
        if isinstance(whole, dict):
            lists = [k for k, v in whole.items() if isinstance(v, list)]
            hint = f" (its key {lists[0]!r} holds a list: save that list itself)" if lists else ""
            problems.add(name, first[0], f"the file is one JSON object spread over lines{hint}; give a JSON array of rows or one row per line")
            return []
    problems.extend(local)
    return rows


# ---------------------------------------------------------------- checking


def check_rows(rows: list[tuple[int, Any]], name: str, split: str, options: IntakeOptions,
               problems: Problems) -> RawSplit:
    """Check types and the format of every row; the file's format is its first row's."""
    fmt: str | None = None
    first_line = 0
    mixed_line, mixed_count, mixed_fmt = 0, 0, ""
    good: list[dict[str, Any]] = []
    good_lines: list[int] = []
    for line, row in rows:
        if not isinstance(row, dict):
            kind = {"str": "string", "int": "number", "float": "number", "bool": "true/false",
                    "NoneType": "null"}.get(type(row).__name__, type(row).__name__)
            problems.add(name, line, f"the row is a JSON {kind}, not an object; write each row as {{\"text\": ...}} or another format")
            continue
        this = row_format(row)
        if this is None:
            problems.add(name, line, _unknown_keys_message(row))
            continue
        if fmt is None:
            fmt, first_line = this, line
        elif this != fmt:
            mixed_count += 1
            if not mixed_line:
                mixed_line, mixed_fmt = line, this
            continue
        errors = check_row(row, this, options.mask_prompt)
        for err in errors:
            problems.add(name, line, err)
        if not errors:
            good.append(row)
            good_lines.append(line)
    if mixed_line:
        problems.add(
            name, mixed_line,
            f"this row is {mixed_fmt} data ({_keys_of(mixed_fmt)}) but the file is {fmt} data "
            f"({_keys_of(fmt)}, from line {first_line}); {mixed_count} row(s) differ. Use one format per file.",
        )
    if fmt == "text" and options.mask_prompt and split == "train":  # said once, not once per file
        problems.add(name, first_line, "'train on completions only' needs prompt/completion or chat rows; "
                     "text rows have no prompt to mask. Turn it off or convert the rows.")
    return RawSplit(split, name, fmt, good, good_lines)


def _keys_of(fmt: str) -> str:
    return "+".join(f"'{k}'" for k in FORMAT_KEYS[fmt])


_RENAMES = {
    ("instruction", "output"): "Alpaca rows: join 'instruction' and 'input' into 'prompt' and rename 'output' to 'completion'",
    ("input", "output"): "rename 'input' to 'prompt' and 'output' to 'completion'",
    ("question", "answer"): "rename 'question' to 'prompt' and 'answer' to 'completion'",
    ("conversations",): "ShareGPT rows: rename 'conversations' to 'messages' with 'role'/'content' turns",
    ("prompt",): "add a 'completion' next to 'prompt'",
    ("completion",): "add a 'prompt' next to 'completion'",
}


def _unknown_keys_message(row: dict) -> str:
    keys = ", ".join(repr(k) for k in list(row)[:8]) or "none"
    expected = "; ".join("{" + ", ".join(f'"{k}"' for k in keys_) + "}" for keys_ in FORMAT_KEYS.values())
    hint = next((h for ks, h in _RENAMES.items() if all(k in row for k in ks)), "rename the keys")
    return f"no known format: keys found {keys}; expected {expected}. Hint: {hint}"


# ---------------------------------------------------------------- layout


def _find_split_file(folder: Path, split: str) -> Path | None:
    for suffix in DATA_SUFFIXES:
        candidate = folder / f"{split}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def split_rows(rows: list[dict], lines: list[int], fraction: float, seed: int):
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
            problems.add(shown, 1, f"the folder has no train.jsonl (found: {present}); a data folder holds "
                         "train.jsonl and optionally valid.jsonl and test.jsonl")
            return Intake(shown, splits, problems, warnings)
        for split, file in files.items():
            if file is not None:
                rows = read_rows(file, str(file), problems)
                splits[split] = check_rows(rows, str(file), split, options, problems)
        if "valid" not in splits and options.valid_fraction > 0:
            _hold_out_valid(splits, options)
            warnings.append(f"no valid.jsonl: held out {options.valid_fraction:.0%} of train as validation (seed {options.seed})")
    else:
        if path.suffix.lower() not in DATA_SUFFIXES:
            problems.add(shown, 1, f"'{path.suffix or path.name}' is not a data file; give a .jsonl or .json file or a folder")
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
        if split is not train and split.format and train.format and split.format != train.format \
                and split.file != train.file:
            problems.add(split.file, split.lines[0] if split.lines else 1,
                         f"{split.name} rows are {split.format} data but train rows are {train.format} data; use one format")
    if problems.count == 0 and len(train.rows) < options.batch_size:
        line = train.lines[-1] if train.lines else 1
        problems.add(train.file, line, f"only {len(train.rows)} training row(s), fewer than one batch of "
                     f"{options.batch_size}; add rows or lower the batch size")
