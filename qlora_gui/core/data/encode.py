"""Turn checked rows into token ids and a mask of the positions that are trained on.

Chat and prompt/completion rows go through the chat template (`chat_template.py`).
With "train on completions only", every assistant turn is trained: the spans
each turn writes in the rendered text (`chat_spans.py`, markers included) are
mapped to tokens through the fast tokenizer's character offsets, so masks
follow where the text is, whatever the template does to other turns.
Text rows train every token and end with EOS exactly once. BOS appears once:
from the template when it prints one, else from the tokenizer as for plain text.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

import numpy as np

from .chat_spans import RowSpans, assistant_spans, left_out_roles, probe_conversations, spans_from_probes
from .chat_template import chat_shape, rejection_hint, render_chat, render_chats
from .flat_tokens import ENCODINGS_AT_ONCE, encode_with_offsets, masks_from_spans, spans_in_order
from .formats import FORMATS
from .preference_rows import PreferenceFormat
from .ragged import Ragged
from .rows import TextFormat, TurnsFormat

OnReject = Callable[[int, str], None]  # (row index, message)
ENCODE_CHUNK = 2048  # rows per tokenizer call: batch speed without every row's Python list alive at once


@dataclass
class EncodedRow:
    """One row as the model sees it: ids, trained positions, and (for the token view) text and offsets."""

    ids: np.ndarray
    trained: np.ndarray
    text: str = ""
    offsets: np.ndarray | None = None  # (n, 2) character spans in `text`
    spans: RowSpans | None = None
    left_out: list[str] = field(default_factory=list)  # roles of turns the template left out


@dataclass
class EncodedSplit:
    """Token ids (truncated to max_seq_length) and trained-position masks, row by row, in flat arrays."""

    tokens: Ragged
    trained: Ragged  # bool per position: True where the token is a training target
    full_lengths: np.ndarray  # lengths before truncation
    lines: list[int]
    truncated: int = 0
    no_target_rows: int = 0
    changed_lines: list[int] = field(default_factory=list)  # rows with a turn the template dropped or rewrote
    reasoning_rows: int = 0  # rows whose earlier reasoning the template left out
    unmarked_rows: int = 0  # rows with an assistant turn that no end-of-turn marker closes
    left_out: dict[str, list[int]] = field(default_factory=dict)  # role -> lines whose turn the template left out
    pairs: int = 0  # preference pairs: rows [0, pairs) hold the chosen sides, [pairs, 2 * pairs) the rejected ones
    reference: np.ndarray | None = None  # DPO: each row's summed answer log-probability under the frozen base
    share_prefix: bool = False  # pairs: batches compute each pair's common prefix once (batching.SharedPrefix)
    trained_tokens: int = -1  # counted while encoding, so a report never reads a memory-mapped split whole

    def __post_init__(self) -> None:
        if not isinstance(self.tokens, Ragged):  # rows given as a list of arrays
            self.tokens = Ragged.from_rows(self.tokens, np.int32)
        if not isinstance(self.trained, Ragged):
            self.trained = Ragged.from_rows(self.trained, np.bool_)
        if self.trained_tokens < 0:
            self.trained_tokens = int(np.count_nonzero(self.trained.values))

    @property
    def row_lengths(self) -> np.ndarray:
        return self.tokens.lengths

    @property
    def lengths(self) -> np.ndarray:
        """What batches are cut by: each row's length, or each pair's longer side (a pair stays together)."""
        lengths, p = self.row_lengths, self.pairs
        return np.maximum(lengths[:p], lengths[p:]) if p else lengths

    @property
    def rows(self) -> int:
        """Training examples: rows, or pairs."""
        return self.pairs or len(self.tokens)


def _hf(tokenizer: Any) -> Any:
    """The Hugging Face tokenizer inside mlx-lm's TokenizerWrapper (batch encoding is much faster)."""
    return getattr(tokenizer, "_tokenizer", tokenizer)


def leading_bos(tokenizer: Any) -> int | None:
    """The BOS id this tokenizer puts before plain text, or None when it adds none."""
    hf = _hf(tokenizer)
    bos = getattr(hf, "bos_token_id", None)
    if bos is None:
        return None
    with_special = hf("a", add_special_tokens=True)["input_ids"]
    return bos if with_special and with_special[0] == bos else None


def _tokenize(tokenizer: Any, texts: list[str], plain: bool, offsets: bool) -> Iterator[EncodedRow]:
    """Batch-encode texts a chunk at a time. Plain text gets the tokenizer's special tokens and one EOS;
    rendered chat text gets BOS only when the template did not print it."""
    hf = _hf(tokenizer)
    bos = leading_bos(tokenizer)
    eos = getattr(tokenizer, "eos_token_id", None)
    for i in range(0, len(texts), ENCODE_CHUNK):
        chunk = texts[i : i + ENCODE_CHUNK]
        enc = hf(
            chunk,
            add_special_tokens=plain,
            return_offsets_mapping=offsets,
            return_attention_mask=False,
            return_token_type_ids=False,
        )
        spans = enc["offset_mapping"] if offsets else [None] * len(chunk)
        for text, ids, offs in zip(chunk, enc["input_ids"], spans, strict=True):
            ids = np.asarray(ids, dtype=np.int32)
            offs = np.asarray(offs, dtype=np.int64).reshape(-1, 2) if offs is not None else None
            if bos is not None and (not len(ids) or ids[0] != bos):
                ids = np.concatenate([np.array([bos], dtype=np.int32), ids])
                offs = np.concatenate([[[0, 0]], offs]) if offs is not None else None
            elif plain and len(ids) > 1 and ids[0] == ids[1] == bos:  # the text began with BOS itself
                ids, offs = ids[1:], (offs[1:] if offs is not None else None)
            if plain and eos is not None and (not len(ids) or ids[-1] != eos):
                ids = np.append(ids, np.int32(eos))
                offs = np.concatenate([offs, [[len(text), len(text)]]]) if offs is not None else None
            yield EncodedRow(ids, np.ones(len(ids), dtype=bool), text, offs)


def _backend(tokenizer: Any) -> Any:
    """The Rust tokenizer behind a fast Hugging Face tokenizer, or None for a slow one."""
    hf = _hf(tokenizer)
    return getattr(hf, "backend_tokenizer", None) if getattr(hf, "is_fast", False) else None


def tokenize_plain(tokenizer: Any, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Flat ids and each row's length for plain text rows, the same ids `_tokenize(plain=True)` gives row by
    row: one call to the fast tokenizer's Rust batch encoder (spread over the cores), then array operations
    for BOS and EOS instead of Python per row."""
    backend = _backend(tokenizer)
    if backend is None:
        rows = [r.ids for r in _tokenize(tokenizer, texts, plain=True, offsets=False)]
        lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
        return (np.concatenate(rows) if rows else np.zeros(0, np.int32)), lengths
    # leading_bos first: its call through the Hugging Face tokenizer turns off any truncation or padding
    # the tokenizer's file set on the Rust tokenizer, as every call through it does.
    bos, eos = leading_bos(tokenizer), getattr(tokenizer, "eos_token_id", None)
    encode = getattr(backend, "encode_batch_fast", backend.encode_batch)  # without offsets, where it exists
    encodings = encode(texts, add_special_tokens=True)
    lens = np.fromiter(map(len, encodings), dtype=np.int64, count=len(encodings))
    flat = np.fromiter(chain.from_iterable(e.ids for e in encodings), dtype=np.int32, count=int(lens.sum()))
    starts = np.cumsum(lens) - lens
    first, second, last = (np.full(len(lens), -1, dtype=np.int64) for _ in range(3))
    first[lens > 0] = flat[starts[lens > 0]]
    second[lens > 1] = flat[starts[lens > 1] + 1]
    last[lens > 0] = flat[starts[lens > 0] + lens[lens > 0] - 1]
    add_bos = (first != bos) if bos is not None else np.zeros(len(lens), dtype=bool)
    drop_first = (~add_bos & (lens > 1) & (second == bos)) if bos is not None else add_bos  # began with BOS itself
    if bos is not None:
        last[(lens == 0) & add_bos] = bos
    body = lens - drop_first
    add_eos = ((body + add_bos == 0) | (last != eos)) if eos is not None else np.zeros(len(lens), dtype=bool)
    out_lens = body + add_bos + add_eos
    out_starts = np.cumsum(out_lens) - out_lens
    keep = np.ones(len(flat), dtype=bool)
    keep[starts[drop_first]] = False
    out = np.empty(int(out_lens.sum()), dtype=np.int32)
    body_starts = np.cumsum(body) - body
    out[np.repeat(out_starts + add_bos - body_starts, body) + np.arange(int(body.sum()))] = flat[keep]
    if bos is not None:
        out[out_starts[add_bos]] = bos
    if eos is not None:
        out[(out_starts + out_lens - 1)[add_eos]] = eos
    return out, out_lens


def encode_chat_text(tokenizer: Any, text: str) -> list[int]:
    """Token ids of a rendered prompt, exactly as training encodes rendered rows."""
    return next(_tokenize(tokenizer, [text], plain=False, offsets=False)).ids.tolist()


def spans_to_mask(offsets: np.ndarray, spans: list[tuple[int, int]]) -> np.ndarray:
    """True for each token that overlaps a span. A token owns the gap before it (offsets may skip spaces)."""
    hi = offsets[:, 1]
    prev_hi = np.concatenate([[0], np.maximum.accumulate(hi)[:-1]]) if len(hi) else hi
    lo = np.minimum(offsets[:, 0], prev_hi)
    mask = np.zeros(len(offsets), dtype=bool)
    for start, end in spans:
        mask |= ((lo < end) & (hi > start)) | ((lo == hi) & (lo >= start) & (lo < end) & (hi > 0))
    return mask


def _mask_by_prefixes(tokenizer: Any, row: EncodedRow, spans: list[tuple[int, int]]) -> np.ndarray:
    """For tokenizers without offsets: token positions from encoding the text up to each span edge."""
    mask = np.zeros(len(row.ids), dtype=bool)
    for start, end in spans:
        first = next(_tokenize(tokenizer, [row.text[:start]], plain=False, offsets=False)).ids
        through = next(_tokenize(tokenizer, [row.text[:end]], plain=False, offsets=False)).ids
        n = min(len(first), len(row.ids))
        differ = np.flatnonzero(first[:n] != row.ids[:n])
        mask[(int(differ[0]) if len(differ) else n) : len(through)] = True
    return mask


def _render_row(
    row: dict, fmt: TurnsFormat, tokenizer: Any, mask_prompt: bool
) -> tuple[str, RowSpans | None, list[str]]:
    messages = fmt.as_messages(row)
    tools = fmt.tools(row)
    text = render_chat(tokenizer, messages, tools)
    left_out = left_out_roles(messages, text)
    if not mask_prompt:
        return text, None, left_out
    render = lambda m, gen: render_chat(tokenizer, m, tools, gen)  # noqa: E731
    return text, assistant_spans(render, messages, text, chat_shape(tokenizer, tools)), left_out


def encode_rows(
    rows: list[dict],
    fmt: str,
    tokenizer: Any,
    mask_prompt: bool,
    on_reject: OnReject | None = None,
    keep_text: bool = False,
) -> Iterator[tuple[int, EncodedRow]]:
    """(index, encoded row) for each row; a row the template rejects goes to on_reject(index, message)."""
    row_format = FORMATS[fmt]
    if isinstance(row_format, TextFormat):
        texts = [row_format.text(r) for r in rows]
        yield from enumerate(_tokenize(tokenizer, texts, plain=True, offsets=keep_text))
        return
    if isinstance(row_format, PreferenceFormat):  # a pair as training sees its chosen side: the answer alone
        yield from _encode_turns(rows, row_format, tokenizer, True, on_reject, keep_text, last_turn_only=True)
        return
    yield from _encode_turns(rows, row_format, tokenizer, mask_prompt, on_reject, keep_text)


@dataclass
class TurnChunk:
    """A chunk of chat rows encoded: the rows kept (by index in the chunk) and their ids and masks, flat."""

    kept: list[int]
    ids: np.ndarray
    trained: np.ndarray
    lengths: np.ndarray
    spans: list[RowSpans | None]
    left_out: list[list[str]]
    texts: list[str]
    offsets: np.ndarray | None  # (n, 2) per flat position, where the tokenizer gives them
    size: int = 0  # rows in the chunk, kept or not


def _reject_row(row: dict, i: int, fmt: TurnsFormat, tokenizer: Any, error: Exception, on_reject: OnReject) -> None:
    roles = {str(t.get("role", "")) for t in fmt.as_messages(row)}
    hint = rejection_hint(str(error), roles, tokenizer)
    on_reject(i, f"the model's chat template rejected this row ({error}): {hint}")


def _render_rows(
    rows: list[dict], fmt: TurnsFormat, tokenizer: Any, mask_prompt: bool, on_reject: OnReject | None
) -> dict[int, tuple[str, RowSpans | None, list[str]]]:
    """Each row rendered, with its assistant spans: rows with the same tools go through the template in one
    batch (and their probes in another); a batch the template rejects is rendered again row by row, so each
    rejected row is reported on its own."""
    messages = [fmt.as_messages(r) for r in rows]
    tools = [fmt.tools(r) for r in rows]
    groups: dict[str, list[int]] = {}
    for i, t in enumerate(tools):
        groups.setdefault(repr(t) if t else "", []).append(i)
    out: dict[int, tuple[str, RowSpans | None, list[str]]] = {}
    for idx in groups.values():
        group_tools = tools[idx[0]]
        try:
            texts = render_chats(tokenizer, [messages[i] for i in idx], group_tools)
            probes: list[list[list[dict]]] = [probe_conversations(messages[i]) for i in idx] if mask_prompt else []
            probed = render_chats(tokenizer, [p for row in probes for p in row], group_tools) if probes else []
        except Exception:  # a Jinja template can raise anything: find the rows it rejects one at a time
            for i in idx:
                try:
                    out[i] = _render_row(rows[i], fmt, tokenizer, mask_prompt)
                except Exception as e:
                    if on_reject is not None:
                        _reject_row(rows[i], i, fmt, tokenizer, e, on_reject)
            continue
        shape = chat_shape(tokenizer, group_tools) if mask_prompt else None
        at = 0
        for n, i in enumerate(idx):
            spans = None
            if shape is not None:
                count = len(probes[n])
                spans = spans_from_probes(messages[i], texts[n], shape, probed[at : at + count])
                at += count
            out[i] = (texts[n], spans, left_out_roles(messages[i], texts[n]))
    return out


def encode_turn_chunk(
    rows: list[dict],
    fmt: TurnsFormat,
    tokenizer: Any,
    mask_prompt: bool,
    on_reject: OnReject | None = None,
    last_turn_only: bool = False,
) -> TurnChunk:
    """Chat rows through the template; with `last_turn_only` only the final assistant turn is trained (a
    preference pair's answer, after prompt turns that may hold earlier answers)."""
    rendered = _render_rows(rows, fmt, tokenizer, mask_prompt, on_reject)
    kept: list[int] = []
    for i in sorted(rendered):
        spans = rendered[i][1]
        answer_turn = len(fmt.as_messages(rows[i])) - 1 if last_turn_only else -1
        if last_turn_only and spans is not None and (not spans.owners or spans.owners[-1] != answer_turn):
            if on_reject is not None:  # only an earlier turn was found: training it would compare the prompt
                on_reject(i, "the chat template leaves out or rewrites the answer, so the pair cannot be compared")
            continue
        kept.append(i)
    texts = [rendered[i][0] for i in kept]
    spans_kept = [rendered[i][1] for i in kept]
    trained_spans = [(s.spans[-1:] if last_turn_only else s.spans) if s is not None else [] for s in spans_kept]
    backend = _backend(tokenizer)
    offsets: np.ndarray | None
    if backend is not None and spans_in_order(trained_spans):
        bos, parts = leading_bos(tokenizer), []
        for a in range(0, len(texts), ENCODINGS_AT_ONCE):
            some = texts[a : a + ENCODINGS_AT_ONCE]
            ids, lengths, offsets = encode_with_offsets(backend, some, bos)
            trained = (
                masks_from_spans(offsets, lengths, trained_spans[a : a + ENCODINGS_AT_ONCE], [len(t) for t in some])
                if mask_prompt
                else np.ones(len(ids), dtype=bool)
            )
            parts.append((ids, trained, lengths, offsets))
        if parts:
            ids, trained, lengths, offsets = (np.concatenate(column) for column in zip(*parts, strict=True))
        else:
            ids, trained, lengths, offsets = (np.zeros(0, np.int32), np.zeros(0, bool), np.zeros(0, np.int64), None)
    else:  # a slow tokenizer (masks from prefixes, where it has no offsets), row by row
        rows_out = list(_encode_rendered(tokenizer, texts, spans_kept, trained_spans))
        lengths = np.fromiter((len(r.ids) for r in rows_out), dtype=np.int64, count=len(rows_out))
        ids = np.concatenate([r.ids for r in rows_out]) if rows_out else np.zeros(0, np.int32)
        trained = np.concatenate([r.trained for r in rows_out]) if rows_out else np.zeros(0, bool)
        known = [r.offsets for r in rows_out if r.offsets is not None]
        offsets = np.concatenate(known) if rows_out and len(known) == len(rows_out) else None
    left_out = [rendered[i][2] for i in kept]
    return TurnChunk(kept, ids, trained, lengths, spans_kept, left_out, texts, offsets, len(rows))


def _encode_rendered(
    tokenizer: Any, texts: list[str], spans: list[RowSpans | None], trained_spans: list[list[tuple[int, int]]]
) -> Iterator[EncodedRow]:
    with_offsets = bool(texts)
    if texts:
        try:
            next(_tokenize(tokenizer, texts[:1], False, offsets=True))
        except NotImplementedError:  # a slow tokenizer: no offsets
            with_offsets = False
    for row_spans, trained, encoded in zip(
        spans, trained_spans, _tokenize(tokenizer, texts, False, offsets=with_offsets), strict=True
    ):
        if row_spans is not None:
            encoded.trained = (
                spans_to_mask(encoded.offsets, trained)
                if encoded.offsets is not None
                else _mask_by_prefixes(tokenizer, encoded, trained)
            )
        yield encoded


def _encode_turns(
    rows: list[dict],
    fmt: TurnsFormat,
    tokenizer: Any,
    mask_prompt: bool,
    on_reject: OnReject | None,
    keep_text: bool,
    last_turn_only: bool = False,
) -> Iterator[tuple[int, EncodedRow]]:
    """(index, encoded row) of each row `encode_turn_chunk` keeps, a chunk at a time."""
    for first in range(0, len(rows), ENCODE_CHUNK):
        reject = (lambda i, m, first=first: on_reject(first + i, m)) if on_reject is not None else None
        part = rows[first : first + ENCODE_CHUNK]
        chunk = encode_turn_chunk(part, fmt, tokenizer, mask_prompt, reject, last_turn_only)
        ends = np.cumsum(chunk.lengths)
        for n, i in enumerate(chunk.kept):
            a, b = int(ends[n] - chunk.lengths[n]), int(ends[n])
            row = EncodedRow(chunk.ids[a:b], chunk.trained[a:b], spans=chunk.spans[n], left_out=chunk.left_out[n])
            if keep_text:
                row.text = chunk.texts[n]
                row.offsets = chunk.offsets[a:b] if chunk.offsets is not None else None
            yield first + i, row
