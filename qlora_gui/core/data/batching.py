"""Batches of similar-length rows, in a seeded order that a resume can rebuild.

Each epoch shuffles the rows with (seed, epoch), sorts them by length inside
windows of 32 batches, cuts batches, and shuffles the batch order. Rows of
similar length share a batch (little padding) and every epoch differs. Only
the very last batch of an epoch can be smaller than batch_size; no row is dropped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import mlx.core as mx
import numpy as np

from .encode import EncodedSplit

PAD_MULTIPLE = 8  # the finest padding step; longer rows pad to coarser steps (see padded_width)
WIDTHS_PER_OCTAVE = 8  # padded widths between T and 2T: at most 1/8 padding, and few shapes to compile
WINDOW_BATCHES = 32


def epoch_batches(
    lengths: np.ndarray, batch_size: int, seed: int, epoch: int, rank: int = 0, world: int = 1
) -> list[np.ndarray]:
    """Row indices of each batch of one epoch; with several ranks, this rank's part of every batch.

    `batch_size` is the global batch, as in mlx-lm: rank r takes rows r, r + world, ... of each batch, so the
    ranks together train exactly the one-process batches (no row dropped, none twice). When a batch's rows do
    not divide evenly, the first ranks take one row more; a rank's part is empty when a batch has fewer rows
    than there are ranks (it then adds nothing to that step's token-weighted sums)."""
    n = len(lengths)
    rng = np.random.default_rng([seed, epoch])
    perm = rng.permutation(n)
    window = batch_size * WINDOW_BATCHES
    batches: list[np.ndarray] = []
    for start in range(0, n, window):
        idx = perm[start : start + window]
        idx = idx[np.argsort(lengths[idx], kind="stable")]
        batches.extend(idx[i : i + batch_size] for i in range(0, len(idx), batch_size))
    order = rng.permutation(len(batches))
    batches = [batches[i] for i in order]
    if world > 1:  # every rank has the same number of (global) batches, hence of steps
        batches = [b[rank::world] for b in batches]
    return batches


def eval_batches(lengths: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """A fixed, length-sorted order for validation and test."""
    idx = np.argsort(lengths, kind="stable")
    return [idx[i : i + batch_size] for i in range(0, len(idx), batch_size)]


def steps_per_epoch(num_batches: int, accumulation: int) -> int:
    """Leftover micro-batches make one more (smaller) step: never dropped."""
    return math.ceil(num_batches / accumulation)


def planned_steps(rows: int, batch_size: int, accumulation: int, epochs: int, iters: int | None) -> tuple[int, int]:
    """(steps per epoch, total steps) for these settings on one machine, as the trainer will count them."""
    per_epoch = steps_per_epoch(math.ceil(rows / max(batch_size, 1)), max(accumulation, 1))
    return per_epoch, iters or epochs * per_epoch


def padded_width(max_len: int) -> int:
    """Tokens per row so the model's input (all but the last) is a multiple of a step that grows with it.

    A compiled step is traced once per input shape. A fixed step of 8 makes a shape every 8 tokens
    (wikisql's 1,000 rows: 21 shapes in 60 batches); mlx-lm's fixed 32 wastes up to half of a short row.
    A step of 1/8 of the width's octave (8 up to 127 tokens, 16 up to 255, 32 up to 511, ...) wastes at
    most an eighth and makes 8 shapes per doubling of the length.
    """
    inputs = max(max_len - 1, 1)
    step = max(PAD_MULTIPLE, (1 << (inputs.bit_length() - 1)) // WIDTHS_PER_OCTAVE)
    return 1 + step * math.ceil(inputs / step)


@dataclass
class SharedPrefix:
    """Preference pairs with each pair's common prefix (its prompt) computed once: the prefixes as one batch,
    left-padded so they all end at the last column, then both sides' continuations after them, right-padded.
    Hidden states are read from [the prefixes' (P*S rows); the continuations' (2P*C rows)]."""

    prompts: np.ndarray  # (P, S) each pair's common prefix, left-padded with 0
    left_padding: np.ndarray  # (P,) the pad tokens before each prefix
    continuations: np.ndarray  # (2P, C) each row's input tokens after its pair's prefix, chosen sides first
    index: np.ndarray  # (K,) for each trained entry, its hidden state's row in [prefixes; continuations]
    owners: np.ndarray  # (K,) the batch row (of 2P) each trained entry belongs to
    targets: np.ndarray  # (K,) as Batch.targets, K bucketed by the continuations' width
    weights: np.ndarray  # (K,)


@dataclass
class Batch:
    """One micro-batch as the losses take it (see `losses.py`)."""

    inputs: np.ndarray  # (B, T) token ids
    positions: np.ndarray  # (K,) flat indices into (B*T) whose next token is trained, padded with 0
    targets: np.ndarray  # (K,) the next token at each position
    weights: np.ndarray  # (K,) 1 for a trained token, 0 for the padding entries
    reference: np.ndarray | None = None  # (B,) DPO: each row's answer log-probability under the frozen base
    shared: SharedPrefix | None = None  # pairs whose prefixes are computed once (a preference loss reads it)

    def arrays(self) -> tuple[mx.array, ...]:
        """What a loss takes after the model: inputs, positions, targets, weights (and the reference); with a
        shared prefix: prompts, left padding, continuations, index, owners, targets, weights (and the reference)."""
        return self.model_arrays() + ((mx.array(self.reference),) if self.reference is not None else ())

    def model_arrays(self) -> tuple[mx.array, ...]:
        """`arrays()` without the reference."""
        if self.shared is not None:
            s = self.shared
            arrays = [s.prompts, s.left_padding, s.continuations, s.index, s.owners, s.targets, s.weights]
        else:
            arrays = [self.inputs, self.positions, self.targets, self.weights]
        return tuple(mx.array(a) for a in arrays)


def position_bucket(trained: int, width: int, rows: int) -> int:
    """Positions the loss gets for `trained` targets: a whole number of rows' worth, so a compiled step
    meets few distinct shapes (at most `rows` per width) while prompt and padding cost nothing."""
    return min(max(math.ceil(trained / width), 1), rows) * width


def make_batch(split: EncodedSplit, idx: np.ndarray) -> Batch:
    """Inputs, and the positions, targets and weights of the trained tokens (not prompt, not padding).

    For preference pairs `idx` names pairs: the batch holds their chosen sides, then their rejected ones."""
    if split.pairs:
        idx = np.concatenate([idx, idx + split.pairs])
    width = padded_width(max(len(split.tokens[i]) for i in idx))
    tokens = np.zeros((len(idx), width), dtype=np.int32)
    trained = np.zeros((len(idx), width), dtype=bool)
    for row, i in enumerate(idx):
        t = split.tokens[i]
        tokens[row, : len(t)] = t
        trained[row, : len(t)] = split.trained[i]
    flat = np.flatnonzero(trained[:, 1:].reshape(-1))
    k = position_bucket(len(flat), width - 1, len(idx))
    positions = np.zeros(k, dtype=np.int32)
    positions[: len(flat)] = flat
    targets = np.zeros(k, dtype=np.int32)
    targets[: len(flat)] = tokens[:, 1:].reshape(-1)[flat]
    weights = np.zeros(k, dtype=np.float32)
    weights[: len(flat)] = 1.0
    reference = split.reference[idx] if split.reference is not None else None
    shared = shared_prefix(split, idx, flat, width - 1, targets[: len(flat)]) if split.share_prefix else None
    return Batch(tokens[:, :-1], positions, targets, weights, reference, shared)


SHARED_WIDTHS_PER_OCTAVE = 4  # a shared batch has two widths (prefixes, continuations): coarser, fewer shapes


def _bucket(n: int) -> int:
    """A width of at least n (at least 1): multiples of a step of 1/4 of the width's octave (at least 8),
    so that the pairs of an epoch make few (prefix, continuation) shapes to compile (wikisql: 51 shapes in 250
    batches of 4 pairs, whole rows 26), at the cost of some padding."""
    n = max(n, 1)
    step = max(PAD_MULTIPLE, (1 << (n.bit_length() - 1)) // SHARED_WIDTHS_PER_OCTAVE)
    return step * math.ceil(n / step)


def shared_prefix(
    split: EncodedSplit, rows: np.ndarray, flat: np.ndarray, width: int, targets: np.ndarray
) -> SharedPrefix:
    """The batch of pairs `rows` (chosen sides, then rejected) as prefixes and continuations; `flat` are the
    trained entries' positions in the plain (rows, width) inputs, `targets` their next tokens."""
    p = len(rows) // 2
    inputs = [split.tokens[i][:-1] for i in rows]  # a row's last token is only a target
    common = np.zeros(p, dtype=np.int64)
    for j in range(p):
        a, b = inputs[j], inputs[j + p]
        n = min(len(a), len(b))
        differ = np.flatnonzero(a[:n] != b[:n])
        common[j] = differ[0] if len(differ) else n
    s = _bucket(int(common.max()))
    c = _bucket(max(len(x) - int(common[r % p]) for r, x in enumerate(inputs)))
    prompts = np.zeros((p, s), dtype=np.int32)
    continuations = np.zeros((2 * p, c), dtype=np.int32)
    for j in range(p):
        if common[j]:
            prompts[j, s - common[j] :] = inputs[j][: common[j]]
    for r, x in enumerate(inputs):
        rest = x[common[r % p] :]
        continuations[r, : len(rest)] = rest
    row, pos = flat // width, flat % width
    start = common[row % p]
    n = len(flat)
    k = position_bucket(n, c, 2 * p) if n <= 2 * p * c else position_bucket(n, width, 2 * p)
    index, owners, padded_targets = (np.zeros(k, dtype=np.int32) for _ in range(3))
    index[:n] = np.where(pos < start, (row % p) * s + (s - start) + pos, p * s + row * c + (pos - start))
    owners[:n], padded_targets[:n] = row, targets
    weights = np.zeros(k, dtype=np.float32)
    weights[:n] = 1.0
    left_padding = (s - common).astype(np.int32)
    return SharedPrefix(prompts, left_padding, continuations, index, owners, padded_targets, weights)


def padding_share(lengths: np.ndarray, batches: list[np.ndarray]) -> float:
    """Share of input positions that are padding, over these batches."""
    real = padded = 0
    for idx in batches:
        if not len(idx):  # a rank's empty part of a batch smaller than the number of ranks
            continue
        ls = lengths[idx]
        real += int((ls - 1).clip(min=0).sum())
        padded += len(idx) * (padded_width(int(ls.max())) - 1)
    return 1 - real / padded if padded else 0.0
