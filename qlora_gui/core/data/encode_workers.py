"""Rows encoded in worker processes, so a large file's Python work spreads over the cores.

Rendering chat templates and finding each assistant turn is Python, one core's worth per process; so is parsing
each row again to encode it (text rows: the Rust encoder spreads over the cores by itself, the parsing around it
does not). For a large file (at least MIN_ROWS rows) chunks of rows go to spawned worker processes (never forked:
the app runs Qt and MLX threads, and macOS spawns anyway), each given the tokenizer once. A chunk travels as its
rows' byte spans in the file, so each worker reads and parses its own rows; results come back in order, with a
bounded number of chunks in flight, as flat arrays. A frozen app starts its workers through
`multiprocessing.freeze_support()` in `qlora_gui/__main__.py`. If the pool cannot start or a worker dies, the
remaining chunks are encoded here.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from .encode import encode_turn_chunk, tokenize_plain
from .formats import FORMATS
from .rows import TextFormat, TurnsFormat

MIN_ROWS = 50_000  # below this, starting the workers (each imports the tokenizer's libraries) costs more
WORKERS_ENV = "QLORA_GUI_ENCODE_WORKERS"  # how many worker processes; 0 encodes in this process
Rejects = list[tuple[int, str]]  # (row index in the chunk, message)

_tokenizer: Any = None


def worker_count(rows: int) -> int:
    """Worker processes for `rows` rows: one per core, none for small files or a single core."""
    env = os.environ.get(WORKERS_ENV, "")
    if env.strip().isdigit():
        return int(env)
    cores = os.cpu_count() or 1
    return min(cores, 8) if rows >= MIN_ROWS and cores > 1 else 0


def _start_worker(tokenizer_blob: bytes) -> None:
    global _tokenizer
    # One process per core already: the Rust encoder's own threads would only compete with the other workers.
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    _tokenizer = pickle.loads(tokenizer_blob)


def encode_chunk(rows: Sequence[dict], fmt_name: str, tokenizer: Any, mask_prompt: bool) -> tuple[Any, Rejects]:
    """One chunk of rows encoded, its rejected rows listed (a callback cannot cross processes): a TurnChunk, or
    for text rows (ids, lengths) as `tokenize_plain` gives them."""
    rejects: Rejects = []
    fmt = FORMATS[fmt_name]
    if isinstance(fmt, TextFormat):
        return tokenize_plain(tokenizer, [fmt.text(r) for r in rows]), rejects
    assert isinstance(fmt, TurnsFormat)
    chunk = encode_turn_chunk(list(rows), fmt, tokenizer, mask_prompt, lambda i, m: rejects.append((i, m)))
    chunk.texts, chunk.offsets = [], None  # only the token view needs them, and it encodes its own rows
    return chunk, rejects


def _encode_in_worker(rows: Sequence[dict], fmt_name: str, mask_prompt: bool) -> tuple[Any, Rejects]:
    return encode_chunk(rows, fmt_name, _tokenizer, mask_prompt)


def encoded_chunks(
    chunks: Iterator[tuple[int, Sequence[dict]]], fmt_name: str, tokenizer: Any, mask_prompt: bool, workers: int
) -> Iterator[tuple[int, Any, Rejects]]:
    """(first row, encoded chunk, rejects) of each chunk, in order: in `workers` processes, or here for 0."""
    local: Callable[[Sequence[dict]], tuple[Any, Rejects]] = lambda rows: encode_chunk(  # noqa: E731
        rows, fmt_name, tokenizer, mask_prompt
    )
    pool = None
    if workers > 0:
        try:
            blob = pickle.dumps(tokenizer)
            pool = ProcessPoolExecutor(
                workers, multiprocessing.get_context("spawn"), initializer=_start_worker, initargs=(blob,)
            )
        except Exception:  # a tokenizer that does not pickle, or no processes here: encode in this process
            pool = None
    if pool is None:
        for start, rows in chunks:
            yield start, *local(rows)
        return
    pending: deque[tuple[int, Sequence[dict], Future | None]] = deque()
    try:
        for start, rows in chunks:
            try:
                future: Future | None = pool.submit(_encode_in_worker, rows, fmt_name, mask_prompt)
            except (BrokenProcessPool, RuntimeError):  # a worker died earlier: the rest here
                future = None
            pending.append((start, rows, future))
            if len(pending) > 2 * workers:
                yield _result(pending.popleft(), local)
        while pending:
            yield _result(pending.popleft(), local)
    finally:
        for _, _, job in pending:
            if job is not None:
                job.cancel()
        pool.shutdown(wait=True, cancel_futures=True)


def _result(
    job: tuple[int, Sequence[dict], Future | None], local: Callable[[Sequence[dict]], tuple[Any, Rejects]]
) -> tuple[int, Any, Rejects]:
    start, rows, future = job
    try:
        if future is None:
            raise BrokenProcessPool
        chunk, rejects = future.result()
    except BrokenProcessPool:  # a worker died (out of memory, killed): this chunk here
        chunk, rejects = local(rows)
    return start, chunk, rejects
