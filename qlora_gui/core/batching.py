"""Batches of similar-length rows, in a seeded order that a resume can rebuild.

Each epoch shuffles the rows with (seed, epoch), sorts them by length inside
windows of 32 batches, cuts batches, and shuffles the batch order. Rows of
similar length share a batch (little padding) and every epoch differs. Only
the very last batch of an epoch can be smaller than batch_size; no row is dropped.
"""

from __future__ import annotations

import math

import numpy as np

from .encode import EncodedSplit

PAD_MULTIPLE = 8  # inputs are padded to a multiple of 8 positions, not 32
WINDOW_BATCHES = 32


def epoch_batches(lengths: np.ndarray, batch_size: int, seed: int, epoch: int,
                  rank: int = 0, world: int = 1) -> list[np.ndarray]:
    """Row indices of each batch of one epoch, this rank's share only."""
    n = len(lengths)
    rng = np.random.default_rng([seed, epoch])
    perm = rng.permutation(n)
    window = batch_size * WINDOW_BATCHES
    batches: list[np.ndarray] = []
    for start in range(0, n, window):
        idx = perm[start:start + window]
        idx = idx[np.argsort(lengths[idx], kind="stable")]
        batches.extend(idx[i:i + batch_size] for i in range(0, len(idx), batch_size))
    order = rng.permutation(len(batches))
    batches = [batches[i] for i in order]
    if world > 1:  # every rank takes the same number of batches
        batches = batches[: len(batches) - len(batches) % world][rank::world]
    return batches


def eval_batches(lengths: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """A fixed, length-sorted order for validation and test."""
    idx = np.argsort(lengths, kind="stable")
    return [idx[i:i + batch_size] for i in range(0, len(idx), batch_size)]


def steps_per_epoch(num_batches: int, accumulation: int) -> int:
    """Leftover micro-batches make one more (smaller) step: never dropped."""
    return math.ceil(num_batches / accumulation)


def padded_width(max_len: int) -> int:
    """Tokens per row so the model's input (all but the last) is a multiple of PAD_MULTIPLE."""
    inputs = max(max_len - 1, 1)
    return 1 + PAD_MULTIPLE * math.ceil(inputs / PAD_MULTIPLE)


def make_batch(split: EncodedSplit, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """inputs, targets and target weights (1 for trained tokens, 0 for prompt and padding)."""
    width = padded_width(max(len(split.tokens[i]) for i in idx))
    tokens = np.zeros((len(idx), width), dtype=np.int32)
    trained = np.zeros((len(idx), width), dtype=np.float32)
    for row, i in enumerate(idx):
        t = split.tokens[i]
        tokens[row, : len(t)] = t
        trained[row, : len(t)] = split.trained[i]
    return tokens[:, :-1], tokens[:, 1:], trained[:, 1:]


def padding_share(lengths: np.ndarray, batches: list[np.ndarray]) -> float:
    """Share of input positions that are padding, over these batches."""
    real = padded = 0
    for idx in batches:
        ls = lengths[idx]
        real += int((ls - 1).clip(min=0).sum())
        padded += len(idx) * (padded_width(int(ls.max())) - 1)
    return 1 - real / padded if padded else 0.0
