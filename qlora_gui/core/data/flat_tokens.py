"""Token ids, character offsets and trained-position masks of a chunk of rows, in flat arrays.

One call to the fast tokenizer's Rust batch encoder for the chunk, then array operations where Python would
otherwise loop per row: a million chat rows cost a few hundred of these calls, not millions of small ones.
"""

from __future__ import annotations

from itertools import chain
from typing import Any

import numpy as np


def _flat_starts(lengths: np.ndarray) -> np.ndarray:
    return np.cumsum(lengths) - lengths


# Rows per call to the Rust encoder (and per mask search): each Encoding it returns holds every token's string,
# offsets and masks (about 100 bytes a token), and the search makes a dozen arrays the size of the tokens, so a
# whole chunk of long chat rows at once (2,048 rows, ~900,000 tokens) took ~190 MB more than the arrays it made.
ENCODINGS_AT_ONCE = 256


def encode_with_offsets(backend: Any, texts: list[str], bos: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids, lengths, offsets (n, 2)) of rendered texts, flat, without the tokenizer's special tokens; BOS
    (offsets (0, 0)) goes before each row that does not already start with it, as `encode._tokenize` does
    for rendered rows."""
    encodings = backend.encode_batch(texts, add_special_tokens=False)
    lens = np.fromiter(map(len, encodings), dtype=np.int64, count=len(encodings))
    total = int(lens.sum())
    ids = np.fromiter(chain.from_iterable(e.ids for e in encodings), dtype=np.int32, count=total)
    offs = np.fromiter(
        chain.from_iterable(chain.from_iterable(e.offsets for e in encodings)), dtype=np.int64, count=2 * total
    ).reshape(-1, 2)
    del encodings
    if bos is None:
        return ids, lens, offs
    starts = _flat_starts(lens)
    first = np.full(len(lens), -1, dtype=np.int64)
    first[lens > 0] = ids[starts[lens > 0]]
    add = first != bos
    if not add.any():
        return ids, lens, offs
    out_lens = lens + add
    body = np.arange(total) + np.repeat(np.cumsum(add), lens)  # each old token's new place
    out_ids = np.full(int(out_lens.sum()), bos, dtype=np.int32)
    out_offs = np.zeros((len(out_ids), 2), dtype=np.int64)
    out_ids[body], out_offs[body] = ids, offs
    return out_ids, out_lens, out_offs


def masks_from_spans(
    offsets: np.ndarray, lengths: np.ndarray, spans: list[list[tuple[int, int]]], text_lengths: list[int]
) -> np.ndarray:
    """`encode.spans_to_mask` of every row at once: rows are laid end to end in one coordinate (row r's
    characters moved past every earlier row's), so one running maximum and one sorted search serve them all.
    Each row's spans must be in order and not overlap (as `chat_spans` finds them)."""
    n = len(lengths)
    if not len(offsets) or not n:
        return np.zeros(0, dtype=bool)
    row_ends = np.cumsum(np.asarray(text_lengths, dtype=np.int64) + 1)
    base_rows = np.concatenate([[0], row_ends[:-1]]).astype(np.int64)  # where each row starts, end to end
    base = np.repeat(base_rows, lengths)
    lo_raw, hi = offsets[:, 0], offsets[:, 1]
    running = np.maximum.accumulate(hi + base)
    prev = np.empty_like(running)
    prev[0], prev[1:] = 0, running[:-1]
    prev = np.maximum(prev, base) - base  # a token owns the gap before it, back to its row's previous token
    lo = np.minimum(lo_raw, prev)
    span_rows = np.repeat(np.arange(n), [len(s) for s in spans])
    flat_spans = np.asarray([s for row in spans for s in row], dtype=np.int64).reshape(-1, 2)
    if not len(flat_spans):
        return np.zeros(len(offsets), dtype=bool)
    span_base = base_rows[span_rows]
    starts, ends = flat_spans[:, 0] + span_base, flat_spans[:, 1] + span_base
    lo_g, hi_g = lo + base, hi + base
    j = np.searchsorted(ends, lo_g, side="right")  # the first span that ends after the token's start
    found = j < len(ends)
    first_start = np.where(found, starts[np.minimum(j, len(ends) - 1)], np.iinfo(np.int64).max)
    overlaps = found & (first_start < hi_g)
    empty_inside = found & (lo == hi) & (first_start <= lo_g) & (hi > 0)
    return overlaps | empty_inside


def spans_in_order(spans: list[list[tuple[int, int]]]) -> bool:
    """Each row's spans run forward without overlapping: what `masks_from_spans` needs."""
    for row in spans:
        for (s0, e0), (s1, _) in zip(row, row[1:], strict=False):
            if s1 < e0 or e0 < s0:
                return False
        if row and row[-1][1] < row[-1][0]:
            return False
    return True
