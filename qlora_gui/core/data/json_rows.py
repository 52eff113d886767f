"""Parse one data file into (line number, JSON value) pairs, as JSON Lines or a JSON array.

Every way the file itself can be unreadable (binary, UTF-16, not UTF-8, broken
JSON, a single pretty-printed object) becomes a `Problem` on its line.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from .file_rows import BLOCK, file_lines
from .problems import Problems

_BINARY_SIGNATURES = {
    b"PAR1": "a Parquet file",
    b"PK\x03\x04": "a ZIP archive (or .xlsx)",
    b"\x1f\x8b": "a gzip archive",
    b"SQLite format 3": "a SQLite database",
    b"%PDF": "a PDF document",
    b"\x89PNG": "a PNG image",
}


def _unreadable(head: bytes, name: str, problems: Problems) -> bool:
    """UTF-16 text or a binary format, told by the file's first bytes."""
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        problems.add(name, 1, "the file is UTF-16 text; re-save it as UTF-8")
        return True
    for magic, what in _BINARY_SIGNATURES.items():
        if head.startswith(magic):
            problems.add(name, 1, f"this is {what}, not JSON text; export the data as JSON Lines (.jsonl)")
            return True
    return False


def _nul_problem(name: str, offset: int, line: int, problems: Problems) -> None:
    problems.add(
        name, line, f"binary data (a NUL byte at byte offset {offset}); give a text file with one JSON object per line"
    )


def _not_utf8(chunk: bytes, e: UnicodeDecodeError, name: str, number: int, problems: Problems) -> None:
    column = len(chunk[: e.start].decode("utf-8", "replace")) + 1
    guess = ""
    try:
        chunk.decode("cp1252")
        guess = " It looks like Windows-1252/Latin-1 text."
    except UnicodeDecodeError:
        pass
    problems.add(
        name, number, f"byte 0x{chunk[e.start]:02X} at column {column} is not UTF-8.{guess} Re-save the file as UTF-8."
    )


def _decode_lines(raw: bytes, name: str, problems: Problems) -> list[tuple[int, str]] | None:
    """Split bytes into (line number, text), tolerating a BOM and CRLF."""
    if _unreadable(raw, name, problems):
        return None
    nul = raw.find(b"\x00")
    if nul >= 0:
        _nul_problem(name, nul, raw.count(b"\n", 0, nul) + 1, problems)
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
            _not_utf8(chunk, e, name, number, problems)
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
                problems.add(
                    name,
                    number,
                    f"more than one JSON value on this line (extra text at column {e.colno}); put one row per line",
                )
            elif number == last_line and rows and not stripped.startswith("{"):
                problems.add(name, number, f"trailing text after the last row: {stripped[:40]!r}; delete it")
            else:
                problems.add(
                    name,
                    number,
                    f"invalid JSON at column {e.colno}: {e.msg}; each line must be one complete JSON object",
                )
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
        problems.add(name, line_of(i), f"trailing text after the closing ']': {text[i : i + 40].strip()!r}; delete it")
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


def _read_whole(path: Path, name: str, problems: Problems) -> list[tuple[int, Any]]:
    """A file that is not JSON Lines (a JSON array, a pretty-printed object): parsed whole."""
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
            problems.add(
                name,
                first[0],
                f"the file is one JSON object spread over lines{hint}; give a JSON array of rows or one row per line",
            )
            return []
    problems.extend(local)
    return rows


def read_rows(path: Path, name: str, problems: Problems) -> list[tuple[int, Any]]:
    """Parse one file into (line, value) pairs; the content decides JSON Lines vs array."""
    return [(line, value) for line, value, _ in stream_rows(path, name, problems)]


Span = tuple[int, int] | None  # a row's bytes in its file; None for rows of a JSON array
OnProgress = Callable[[str, float], None]  # (what is being done, share done)
PROGRESS_LINES = 20_000  # lines between two progress reports


def stream_rows(
    path: Path, name: str, problems: Problems, on_progress: OnProgress | None = None
) -> Iterator[tuple[int, Any, Span]]:
    """(line, value, byte span) for each row, a JSON Lines file read as a stream; the content decides JSON Lines
    vs array (an array file, rarely large, is parsed whole)."""
    try:
        f = open(path, "rb")  # noqa: SIM115 - a generator: closed below
    except OSError as e:
        problems.add(name, 1, f"cannot read the file ({e.strerror}); check that it exists and is readable")
        return
    with f:
        head = f.read(64)
        if _unreadable(head, name, problems) or _has_nul(f, name, problems):
            return
        start = 3 if head.startswith(b"\xef\xbb\xbf") else 0
        first = next(((n, t) for n, _, t in file_lines(f, start) if t.strip()), None)
        if first is None:
            what = "empty" if not head.strip(b"\xef\xbb\xbf") else "only blank lines"
            problems.add(name, 1, f"the file is {what}; it needs at least one row")
            return
        text = first[1].decode("utf-8", "replace").lstrip()
        if (text.startswith("[") and _is_array_file(path, text)) or text.rstrip() == "{":
            yield from ((line, value, None) for line, value in _read_whole(path, name, problems))
            return
        size = max(path.stat().st_size, 1)
        report = (lambda pos: on_progress(f"reading {path.name}", pos / size)) if on_progress else None
        yield from _stream_json_lines(f, start, name, problems, report)


def _has_nul(f: BinaryIO, name: str, problems: Problems) -> bool:
    """A NUL byte anywhere: binary data, said on its line."""
    f.seek(0)
    offset, newlines = 0, 0
    while block := f.read(BLOCK):
        nul = block.find(b"\x00")
        if nul >= 0:
            _nul_problem(name, offset + nul, newlines + block.count(b"\n", 0, nul) + 1, problems)
            return True
        offset, newlines = offset + len(block), newlines + block.count(b"\n")
    return False


def _stream_json_lines(
    f: BinaryIO, start: int, name: str, problems: Problems, report: Callable[[int], None] | None
) -> Iterator[tuple[int, Any, Span]]:
    pending: tuple[int, str, json.JSONDecodeError] | None = None  # an error that reads otherwise on the last line
    rows = 0
    for number, pos, chunk in file_lines(f, start):
        if report is not None and number % PROGRESS_LINES == 0:
            report(pos)
        if chunk.endswith(b"\r"):
            chunk = chunk[:-1]
        try:
            text = chunk.decode("utf-8")
        except UnicodeDecodeError as e:
            _not_utf8(chunk, e, name, number, problems)
            continue
        if not text.strip():
            continue
        if pending is not None:
            _invalid(name, *pending, problems)
            pending = None
        try:
            value = json.loads(text)
        except json.JSONDecodeError as e:
            if e.msg == "Extra data":
                problems.add(
                    name,
                    number,
                    f"more than one JSON value on this line (extra text at column {e.colno}); put one row per line",
                )
            elif rows and not text.strip().startswith("{"):
                pending = (number, text, e)
            else:
                _invalid(name, number, text, e, problems)
            continue
        rows += 1
        yield number, value, (pos, pos + len(chunk))
    if pending is not None:
        problems.add(name, pending[0], f"trailing text after the last row: {pending[1].strip()[:40]!r}; delete it")


def _invalid(name: str, number: int, text: str, e: json.JSONDecodeError, problems: Problems) -> None:
    problems.add(name, number, f"invalid JSON at column {e.colno}: {e.msg}; each line must be one complete JSON object")
