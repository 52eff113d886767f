"""Encode a checked split a chunk of rows at a time into flat arrays.

Rows stream from the file (`file_rows.py`), each chunk is tokenized in one batch call and cut to
max_seq_length, and its ids and masks go straight to the token cache's files: memory holds one chunk,
whatever the size of the data. Statistics the report needs are counted on the way.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np

from .chat_template import rejection_hint, render_chat
from .encode import ENCODE_CHUNK, EncodedSplit, TurnChunk, _encode_turns, _tokenize, tokenize_plain
from .encode_workers import encoded_chunks, worker_count
from .formats import format_named
from .intake import RawSplit
from .json_rows import OnProgress
from .preference_rows import SIDES, PreferenceFormat
from .problems import Problems
from .prompt_rows import PromptFormat
from .ragged import Ragged, RaggedWriter, row_positions
from .rows import CHAT, TEXT, TextFormat


class _Writer:
    """Chunks of rows, to a file (memory-mapped back) or, without a folder, in memory."""

    def __init__(self, folder: Path | None, name: str, dtype: type):
        self.dtype = dtype
        self.file = RaggedWriter(folder / name, dtype) if folder is not None else None
        self.values: list[np.ndarray] = []
        self.lengths: list[np.ndarray] = []

    def append(self, values: np.ndarray, lengths: np.ndarray) -> None:
        if self.file is not None:
            self.file.append(values, lengths)
        else:
            self.values.append(values.astype(self.dtype))
            self.lengths.append(lengths)

    def finish(self) -> Ragged:
        if self.file is not None:
            return self.file.finish()
        lengths = np.concatenate(self.lengths) if self.lengths else np.zeros(0, dtype=np.int64)
        values = np.concatenate(self.values) if self.values else np.zeros(0, dtype=self.dtype)
        return Ragged(values, np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64))


def _chunks(rows: Any) -> Iterator[tuple[int, list[dict]]]:
    it, start = iter(rows), 0
    while chunk := list(islice(it, ENCODE_CHUNK)):
        yield start, chunk
        start += len(chunk)


def _row_slices(rows: Any) -> Iterator[tuple[int, Any]]:
    """The rows a chunk at a time as slices: a file's rows stay byte spans until a worker reads them."""
    for start in range(0, len(rows), ENCODE_CHUNK):
        yield start, rows[start : start + ENCODE_CHUNK]


def _text_chunks(raw: RawSplit, fmt: TextFormat, tokenizer: Any) -> Iterator[tuple[int, Any]]:
    """(first row, (ids, lengths)) of each chunk of text rows. The Rust encoder tokenizes a chunk in a thread
    (it lets go of the GIL) while the next chunk is read and parsed here."""
    with ThreadPoolExecutor(1, thread_name_prefix="encode") as pool:
        pending: tuple[int, Future] | None = None
        for start, chunk in _chunks(raw.rows):
            job = (start, pool.submit(tokenize_plain, tokenizer, [fmt.text(r) for r in chunk]))
            if pending is not None:
                yield pending[0], pending[1].result()
            pending = job
        if pending is not None:
            yield pending[0], pending[1].result()


def encode_split(
    raw: RawSplit,
    tokenizer: Any,
    max_seq_length: int,
    mask_prompt: bool,
    problems: Problems,
    folder: Path | None = None,
    on_progress: OnProgress | None = None,
) -> EncodedSplit:
    """Tokenize a checked split; with a folder its ids and masks are written there and memory-mapped.
    Template failures become line-numbered problems."""
    if isinstance(format_named(raw.format), PreferenceFormat):
        return _encode_pairs(raw, tokenizer, max_seq_length, problems)
    if isinstance(format_named(raw.format), PromptFormat):
        return _encode_prompts(raw, tokenizer, max_seq_length, problems)
    fmt = format_named(raw.format) or TEXT
    ids_out, mask_out = _Writer(folder, f"{raw.name}.ids", np.int32), _Writer(folder, f"{raw.name}.mask", np.bool_)
    out = EncodedSplit(Ragged.from_rows([], np.int32), Ragged.from_rows([], np.bool_), np.zeros(0, np.int64), [])
    full: list[np.ndarray] = []
    trained_tokens = no_target = 0
    workers = worker_count(len(raw.rows))
    if isinstance(fmt, TextFormat) and not workers:
        chunks: Iterator[tuple[int, Any]] = _text_chunks(raw, fmt, tokenizer)
    else:  # chat rows, or a large file's text rows in worker processes
        parts = _row_slices(raw.rows) if workers else _chunks(raw.rows)  # a worker reads its own rows
        encoded_parts = encoded_chunks(parts, fmt.name, tokenizer, mask_prompt, workers)
        chunks = ((s, c if isinstance(c, tuple) else (c, r)) for s, c, r in encoded_parts)
    for start, chunk in chunks:
        if isinstance(chunk[0], TurnChunk):
            encoded, rejects = chunk
            lines = raw.lines[start : start + encoded.size]
            for i, message in rejects:
                problems.add(raw.file, lines[i], message)
            kept = [lines[i] for i in encoded.kept]
            ids, mask, lengths = encoded.ids, encoded.trained, encoded.lengths
            for line, spans, left_out in zip(kept, encoded.spans, encoded.left_out, strict=True):
                for role in dict.fromkeys(left_out):
                    out.left_out.setdefault(role, []).append(line)
                if spans is not None:
                    if spans.changed:
                        out.changed_lines.append(line)
                    out.reasoning_rows += bool(spans.reasoning_dropped)
                    out.unmarked_rows += bool(spans.unmarked)
        else:  # text rows, tokenized
            ids, lengths = chunk
            lines = raw.lines[start : start + len(lengths)]
            mask, kept = np.ones(len(ids), dtype=bool), lines
        out.lines.extend(kept)
        full.append(lengths)
        positions = row_positions(lengths)
        keep = positions < max_seq_length
        cut = np.minimum(lengths, max_seq_length)
        ids_out.append(ids[keep], cut)
        mask_out.append(mask[keep], cut)
        trained_tokens += int(np.count_nonzero(mask[keep]))
        # Position 0 is never a target: nothing comes before it to predict it from.
        rows = np.repeat(np.arange(len(lengths)), cut)
        targets = np.bincount(rows, weights=mask[keep] & (positions[keep] > 0), minlength=len(lengths))
        no_target += int((targets == 0).sum())
        if on_progress is not None:
            on_progress(f"encoding {raw.name}", (start + len(lines)) / max(len(raw.rows), 1))
    out.tokens, out.trained = ids_out.finish(), mask_out.finish()
    out.full_lengths = np.concatenate(full) if full else np.zeros(0, np.int64)
    out.truncated = int((out.full_lengths > max_seq_length).sum())
    out.trained_tokens, out.no_target_rows = trained_tokens, no_target
    return out


def _encode_pairs(raw: RawSplit, tokenizer: Any, max_seq_length: int, problems: Problems) -> EncodedSplit:
    """Each pair as two chat rows, chosen sides first; only each answer is trained. A pair the template
    rejects on either side is left out whole (its problem makes the data unusable anyway)."""
    fmt = format_named(raw.format)
    assert isinstance(fmt, PreferenceFormat)
    rows_in = list(raw.rows)
    reject = lambda i, message: problems.add(raw.file, raw.lines[i % len(rows_in)], message)  # noqa: E731
    sides = [{"messages": fmt.side(r, side)} for side in SIDES for r in rows_in]
    encoded = dict(_encode_turns(sides, CHAT, tokenizer, True, reject, False, last_turn_only=True))
    n = len(rows_in)
    kept = [i for i in range(n) if i in encoded and i + n in encoded]
    rows = [(raw.lines[i], encoded[i]) for i in kept] + [(raw.lines[i], encoded[i + n]) for i in kept]
    ids, trained = (
        Ragged.from_rows(x, t)
        for x, t in (([r.ids for _, r in rows], np.int32), ([r.trained for _, r in rows], np.bool_))
    )
    out = EncodedSplit(ids, trained, np.zeros(0, np.int64), [])
    out.pairs = len(kept)
    out.lines = [line for line, _ in rows]
    for line, row in rows:
        for role in dict.fromkeys(row.left_out):
            out.left_out.setdefault(role, []).append(line)
        if row.spans is not None:
            if row.spans.changed:
                out.changed_lines.append(line)
            out.reasoning_rows += bool(row.spans.reasoning_dropped)
            out.unmarked_rows += bool(row.spans.unmarked)
    out.full_lengths = out.row_lengths
    cut = out.full_lengths > max_seq_length
    out.truncated = int((cut[: out.pairs] | cut[out.pairs :]).sum())  # a pair is cut when either side is
    out.changed_lines = list(dict.fromkeys(out.changed_lines))  # a pair's line once, though both sides show it
    out.left_out = {role: list(dict.fromkeys(lines)) for role, lines in out.left_out.items()}
    cut_ids = [t[:max_seq_length] for t in out.tokens]
    cut_masks = [m[:max_seq_length] for m in out.trained]
    out.tokens, out.trained = Ragged.from_rows(cut_ids, np.int32), Ragged.from_rows(cut_masks, np.bool_)
    out.trained_tokens = int(np.count_nonzero(out.trained.values))
    no_target = [i for i, m in enumerate(out.trained) if not m[1:].any()]
    out.no_target_rows = len({i % out.pairs for i in no_target} if out.pairs else no_target)
    for line in dict.fromkeys(out.lines[i] for i in no_target):  # a pair with its answer cut away compares nothing
        problems.add(
            raw.file,
            line,
            f"the prompt fills max_seq_length={max_seq_length} tokens, so no answer token is left to compare; "
            "raise max_seq_length or shorten the prompt",
        )
    return out


def _encode_prompts(raw: RawSplit, tokenizer: Any, max_seq_length: int, problems: Problems) -> EncodedSplit:
    """GRPO's prompts, each rendered with the generation prompt: what the model answers. No position of a
    prompt is trained (the model's own answers are), and a prompt too long to leave room for an answer is a
    problem on its line."""
    fmt = format_named(raw.format)
    assert isinstance(fmt, PromptFormat)
    texts, lines = [], []
    for row, line in zip(raw.rows, raw.lines, strict=True):
        turns = fmt.as_messages(row)
        try:
            texts.append(render_chat(tokenizer, turns, add_generation_prompt=True))
            lines.append(line)
        except Exception as e:  # a Jinja template can raise anything; report it on the row
            roles = {str(t.get("role", "")) for t in turns}
            problems.add(
                raw.file,
                line,
                f"the model's chat template rejected this prompt ({e}): {rejection_hint(str(e), roles, tokenizer)}",
            )
    ids = [r.ids for r in _tokenize(tokenizer, texts, plain=False, offsets=False)]
    out = EncodedSplit(
        Ragged.from_rows(ids, np.int32),
        Ragged.from_rows([np.zeros(len(i), bool) for i in ids], np.bool_),
        np.fromiter(map(len, ids), dtype=np.int64, count=len(ids)),
        lines,
        trained_tokens=0,
    )
    for line, n in zip(lines, out.full_lengths, strict=True):
        if n >= max_seq_length:
            problems.add(
                raw.file,
                line,
                f"the prompt is {n} tokens, and max_seq_length={max_seq_length} leaves no room for "
                "an answer; raise max_seq_length or shorten the prompt",
            )
    return out
