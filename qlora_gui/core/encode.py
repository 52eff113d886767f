"""Turn checked rows into token ids and a mask of the positions that are trained on.

Chat and prompt/completion rows go through the tokenizer's chat template. A
tokenizer without one gets the plain fallback below, which the README documents:

    <bos>System: {content}\\n\\nUser: {content}\\n\\nAssistant: {content}<eos>\\n\\n

and a generation prompt that ends in "Assistant:" (no space, so BPE cannot merge it
into the answer).

With "train on completions only" every assistant turn (its text and end-of-turn
marker) is trained on and everything else is masked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .intake import Problems, RawSplit
from .rows import as_messages

FALLBACK_TEMPLATE_DOC = "System: …\\n\\nUser: …\\n\\nAssistant: …<eos>"


@dataclass
class EncodedSplit:
    """Token ids (truncated to max_seq_length) and trained-position masks, row by row."""

    tokens: list[np.ndarray]
    trained: list[np.ndarray]  # bool per position: True where the token is a training target
    full_lengths: np.ndarray  # lengths before truncation
    lines: list[int]
    truncated: int = 0
    no_target_rows: int = 0
    templated: bool = False

    @property
    def lengths(self) -> np.ndarray:
        return np.fromiter((len(t) for t in self.tokens), dtype=np.int64, count=len(self.tokens))


def has_chat_template(tokenizer: Any) -> bool:
    flag = getattr(tokenizer, "has_chat_template", None)
    return bool(flag) if flag is not None else getattr(tokenizer, "chat_template", None) is not None


def _hf(tokenizer: Any) -> Any:
    """The Hugging Face tokenizer inside mlx-lm's TokenizerWrapper (batch encoding is much faster)."""
    return getattr(tokenizer, "_tokenizer", tokenizer)


ENCODE_CHUNK = 2048  # rows per tokenizer call: batch speed without every row's Python list alive at once


def _encode_many(tokenizer: Any, texts: list[str], add_special_tokens: bool) -> list[np.ndarray]:
    """Batch-encode texts into compact int32 arrays, a chunk at a time."""
    hf = _hf(tokenizer)
    out: list[np.ndarray] = []
    for i in range(0, len(texts), ENCODE_CHUNK):
        ids = hf(texts[i:i + ENCODE_CHUNK], add_special_tokens=add_special_tokens,
                 return_attention_mask=False, return_token_type_ids=False)["input_ids"]
        out.extend(np.asarray(x, dtype=np.int32) for x in ids)
    return out


def render_fallback(messages: list[dict], add_generation_prompt: bool, tokenizer: Any) -> str:
    bos = getattr(tokenizer, "bos_token", None) or ""
    eos = getattr(tokenizer, "eos_token", None) or ""
    parts = [bos]
    for turn in messages:
        role, content = turn["role"], turn.get("content") or ""
        if role == "assistant":
            parts.append(f"Assistant: {content}{eos}\n\n")
        else:
            parts.append(f"{role.capitalize()}: {content}\n\n")
    if add_generation_prompt:
        # No trailing space: BPE would merge it into the answer's first token.
        parts.append("Assistant:")
    return "".join(parts)


def render_chat(tokenizer: Any, messages: list[dict], tools: list | None = None,
                add_generation_prompt: bool = False) -> str:
    """The exact text the model sees for these turns; the playground uses this too."""
    if not has_chat_template(tokenizer):
        return render_fallback(messages, add_generation_prompt, tokenizer)
    kwargs = {"tools": tools} if tools else {}
    return tokenizer.apply_chat_template(messages, add_generation_prompt=add_generation_prompt,
                                         tokenize=False, **kwargs)


def _chat_texts(row: dict, fmt: str, tokenizer: Any, mask_prompt: bool) -> tuple[str, list[tuple[str, str]]]:
    """The full text, and for each assistant turn the (prefix before it, text through it)."""
    messages = as_messages(row, fmt)
    tools = row.get("tools") if fmt == "chat" else None
    full = render_chat(tokenizer, messages, tools)
    spans = []
    if mask_prompt:
        for i, turn in enumerate(messages):
            if turn.get("role") != "assistant":
                continue
            before = render_chat(tokenizer, messages[:i], tools, add_generation_prompt=True) if i else ""
            through = render_chat(tokenizer, messages[: i + 1], tools)
            spans.append((before, through))
        # Templates that rewrite earlier turns (e.g. dropping old reasoning) break the
        # prefix property; then train on the last assistant turn only, as mlx-lm does.
        if any(not full.startswith(t) or not t.startswith(b) for b, t in spans):
            last = max(i for i, t in enumerate(messages) if t.get("role") == "assistant")
            spans = [(render_chat(tokenizer, messages[:last], tools, add_generation_prompt=True), full)]
    return full, spans


def _common_prefix_len(a: np.ndarray, b: np.ndarray) -> int:
    n = min(len(a), len(b))
    differ = np.flatnonzero(a[:n] != b[:n])
    return int(differ[0]) if len(differ) else n


def encode_split(raw: RawSplit, tokenizer: Any, max_seq_length: int, mask_prompt: bool,
                 problems: Problems) -> EncodedSplit:
    """Tokenize a checked split. Template failures become line-numbered problems."""
    eos = getattr(tokenizer, "eos_token_id", None)
    fmt = raw.format
    tokens: list[np.ndarray] = []
    trained: list[np.ndarray] = []
    lines: list[int] = []
    if fmt == "text":
        for ids, line in zip(_encode_many(tokenizer, [r["text"] for r in raw.rows], True), raw.lines):
            if eos is not None and (not len(ids) or ids[-1] != eos):
                ids = np.append(ids, np.int32(eos))
            tokens.append(ids)
            trained.append(np.ones(len(ids), dtype=bool))
            lines.append(line)
    else:
        texts, spans_per_row = [], []
        for row, line in zip(raw.rows, raw.lines):
            try:
                full, spans = _chat_texts(row, fmt, tokenizer, mask_prompt)
            except Exception as e:  # a Jinja template can raise anything; report it on the row
                problems.add(raw.file, line, f"the model's chat template rejected this row: {e}; fix the turns "
                             "(many templates need user/assistant turns to alternate)")
                continue
            texts.append(full)
            spans_per_row.append(spans)
            lines.append(line)
        full_ids = _encode_many(tokenizer, texts, False)
        span_texts = [t for spans in spans_per_row for pair in spans for t in pair]
        span_ids = _encode_many(tokenizer, span_texts, False)
        cursor = 0
        for ids, spans in zip(full_ids, spans_per_row):
            if mask_prompt:
                mask = np.zeros(len(ids), dtype=bool)
                for _ in spans:
                    # Where the prefix's last token merges into the answer's first, the common
                    # prefix (not the prefix's length) is where the answer starts.
                    start = _common_prefix_len(span_ids[cursor], ids)
                    end = len(span_ids[cursor + 1])
                    mask[start:end] = True
                    cursor += 2
            else:
                mask = np.ones(len(ids), dtype=bool)
            tokens.append(ids)
            trained.append(mask)

    full_lengths = np.fromiter((len(t) for t in tokens), dtype=np.int64, count=len(tokens))
    truncated = int((full_lengths > max_seq_length).sum())
    if truncated:
        tokens = [t[:max_seq_length] for t in tokens]
        trained = [m[:max_seq_length] for m in trained]
    # Position 0 is never a target: nothing comes before it to predict it from.
    no_target = sum(1 for m in trained if not m[1:].any())
    return EncodedSplit(tokens, trained, full_lengths, lines, truncated, no_target, fmt != "text")
