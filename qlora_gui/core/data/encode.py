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

from .chat_spans import RowSpans, assistant_spans, left_out_roles
from .chat_template import chat_shape, rejection_hint, render_chat
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
    encode = getattr(backend, "encode_batch_fast", backend.encode_batch)  # without offsets, where it exists
    ids = [e.ids for e in encode(texts, add_special_tokens=True)]
    lens = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
    flat = np.fromiter(chain.from_iterable(ids), dtype=np.int32, count=int(lens.sum()))
    bos, eos = leading_bos(tokenizer), getattr(tokenizer, "eos_token_id", None)
    starts = np.cumsum(lens) - lens
    first, second, last = (np.full(len(ids), -1, dtype=np.int64) for _ in range(3))
    first[lens > 0] = flat[starts[lens > 0]]
    second[lens > 1] = flat[starts[lens > 1] + 1]
    last[lens > 0] = flat[starts[lens > 0] + lens[lens > 0] - 1]
    add_bos = (first != bos) if bos is not None else np.zeros(len(ids), dtype=bool)
    drop_first = (~add_bos & (lens > 1) & (second == bos)) if bos is not None else add_bos  # began with BOS itself
    if bos is not None:
        last[(lens == 0) & add_bos] = bos
    body = lens - drop_first
    add_eos = ((body + add_bos == 0) | (last != eos)) if eos is not None else np.zeros(len(ids), dtype=bool)
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


def _encode_turns(
    rows: list[dict],
    fmt: TurnsFormat,
    tokenizer: Any,
    mask_prompt: bool,
    on_reject: OnReject | None,
    keep_text: bool,
    last_turn_only: bool = False,
) -> Iterator[tuple[int, EncodedRow]]:
    """Chat rows through the template; with `last_turn_only` only the final assistant turn is trained (a
    preference pair's answer, after prompt turns that may hold earlier answers)."""
    rendered: list[tuple[int, str, RowSpans | None, list[str]]] = []
    for i, row in enumerate(rows):
        try:
            text, spans, left_out = _render_row(row, fmt, tokenizer, mask_prompt)
        except Exception as e:  # a Jinja template can raise anything; report it on the row
            if on_reject is not None:
                roles = {str(t.get("role", "")) for t in fmt.as_messages(row)}
                on_reject(
                    i, f"the model's chat template rejected this row ({e}): {rejection_hint(str(e), roles, tokenizer)}"
                )
            continue
        answer_turn = len(fmt.as_messages(row)) - 1
        if last_turn_only and spans is not None and (not spans.owners or spans.owners[-1] != answer_turn):
            if on_reject is not None:  # only an earlier turn was found: training it would compare the prompt
                on_reject(i, "the chat template leaves out or rewrites the answer, so the pair cannot be compared")
            continue
        rendered.append((i, text, spans, left_out))
    texts = [r[1] for r in rendered]
    with_offsets = mask_prompt or keep_text
    if with_offsets and texts:
        try:
            next(_tokenize(tokenizer, texts[:1], False, offsets=True))
        except NotImplementedError:  # a slow tokenizer: no offsets
            with_offsets = False
    # Streamed a chunk at a time: every row's offsets at once would cost more than the tokens themselves.
    for (i, _, spans, left_out), encoded in zip(
        rendered, _tokenize(tokenizer, texts, False, offsets=with_offsets), strict=True
    ):
        encoded.left_out = left_out
        if spans is not None:
            offsets = encoded.offsets if with_offsets else None  # never None when asked for
            trained = spans.spans[-1:] if last_turn_only else spans.spans
            encoded.trained = (
                spans_to_mask(offsets, trained)
                if offsets is not None
                else _mask_by_prefixes(tokenizer, encoded, trained)
            )
            encoded.spans = spans
        if not keep_text:
            encoded.text, encoded.offsets = "", None
        yield i, encoded
