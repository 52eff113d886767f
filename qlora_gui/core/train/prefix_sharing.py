"""Preference pairs with their common prefix computed once: the prompt, then both answers from its KV cache.

A pair's chosen and rejected rows begin with the same tokens (the prompt, often the answers' first words too).
Computed as two rows, that prefix passes through the model twice; here it passes once: the pairs' prefixes run
as one batch (left-padded, so that they all end at the last column) and fill a KV cache, which is then doubled
along the batch (the chosen rows' copy and the rejected rows') and both sides' continuations run on it. Each
continuation token attends to its pair's prefix and to its own side, at the positions it has in its own row
(the cache's per-row offset), so every hidden state is the one the plain two-row pass gives, to rounding; the
gradient flows back through the cache into the prefix's pass. The DPO reference (the base, adapters off) is
measured the same way. `shares_prefix` checks on a probe pair that the model computes this (a KV cache with
per-row offsets and a left-padding mask, as mlx-lm's batched generation uses); else the rows stay whole.
"""

from __future__ import annotations

from typing import Any

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from ..data.batching import make_batch
from ..data.encode import EncodedSplit
from ..data.ragged import Ragged


class PrefixCache:
    """One layer's keys and values: the prefixes' (left-padded), then the continuations' appended."""

    def __init__(self, left_padding: mx.array):
        self.left_padding = left_padding
        self.offset = -left_padding  # each row's first real token is at position 0
        self.keys: mx.array | None = None
        self.values: mx.array | None = None
        self.length = 0

    def update_and_fetch(self, keys: mx.array, values: mx.array) -> tuple[mx.array, mx.array]:
        if self.keys is None or self.values is None:
            self.keys, self.values = keys, values
        else:
            self.keys = mx.concatenate([self.keys, keys], axis=2)
            self.values = mx.concatenate([self.values, values], axis=2)
        self.offset = self.offset + keys.shape[2]
        self.length += keys.shape[2]
        return self.keys, self.values

    def make_mask(self, n: int, return_array: bool = False, window_size: int | None = None, **_: Any) -> mx.array:
        """Causal over the cached and the new tokens, never onto a row's left padding."""
        from mlx_lm.models.base import create_causal_mask

        return create_causal_mask(n, offset=self.length, window_size=window_size, left_padding=self.left_padding)

    def doubled(self) -> None:
        """The batch twice over: the prefixes' cache for the chosen rows, then for the rejected rows."""
        if self.keys is None or self.values is None:
            raise ValueError("the prefixes' pass has not run")
        self.keys = mx.concatenate([self.keys, self.keys], axis=0)
        self.values = mx.concatenate([self.values, self.values], axis=0)
        self.offset = mx.concatenate([self.offset, self.offset])
        self.left_padding = mx.concatenate([self.left_padding, self.left_padding])


def shared_hidden(
    model: nn.Module, prompts: mx.array, left_padding: mx.array, continuations: mx.array, index: mx.array
) -> mx.array:
    """The hidden states (after the final norm) of the trained entries: rows `index` of [the prefixes' (P*S);
    the continuations' (2P*C)]."""
    caches = [PrefixCache(left_padding) for _ in model.layers]
    first = model.model(prompts, cache=caches)
    for cache in caches:
        cache.doubled()
    rest = model.model(continuations, cache=caches)
    hidden = mx.concatenate([first.reshape(-1, first.shape[-1]), rest.reshape(-1, rest.shape[-1])])
    return mx.take(hidden, index, axis=0)


def _probe_pair() -> EncodedSplit:
    """One pair with a 5-token prompt and answers of 3 and 2 tokens (ids every vocabulary has)."""
    chosen = np.array([1, 2, 3, 4, 5, 6, 7, 8], dtype=np.int32)
    rejected = np.array([1, 2, 3, 4, 5, 9, 10], dtype=np.int32)
    trained = [np.arange(len(chosen)) >= 5, np.arange(len(rejected)) >= 5]
    tokens = Ragged.from_rows([chosen, rejected], np.int32)
    return EncodedSplit(tokens, Ragged.from_rows(trained, np.bool_), np.array([8, 7]), [1, 1], pairs=1)


def shares_prefix(model: nn.Module, logps: Any) -> bool:
    """Whether this model's hidden states from `shared_hidden` are those of whole rows, on a probe pair
    (`logps(model, *batch.model_arrays())`: each row's answer log-probability, for either layout)."""
    if getattr(model, "model", None) is None or not hasattr(model, "layers"):
        return False
    was_training = model.training
    model.eval()  # no dropout while comparing
    try:
        split = _probe_pair()
        whole = np.array(logps(model, *make_batch(split, np.array([0])).model_arrays())[0])
        split.share_prefix = True
        shared = np.array(logps(model, *make_batch(split, np.array([0])).model_arrays())[0])
        return bool(np.allclose(whole, shared, rtol=1e-3, atol=1e-3))
    except Exception:  # a model whose layers take no such cache  # noqa: BLE001
        return False
    finally:
        model.train(was_training)
