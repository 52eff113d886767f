"""How a model ranks the two answers of held-out preference pairs."""

from __future__ import annotations

from typing import cast

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from ..data.batching import make_batch
from ..data.encode import EncodedSplit
from ..train.preference import sequence_logps


def pair_preference(model: nn.Module, split: EncodedSplit, order: list[np.ndarray]) -> tuple[float, int, float]:
    """Over the pairs in `order`: the chosen answers' mean per-token loss, their token count, and the share of
    pairs whose chosen answer the model finds likelier (higher summed log-probability) than the rejected one."""
    totals = mx.zeros((4,), dtype=mx.float32)  # chosen NLL, chosen tokens, pairs won, pairs
    for idx in order:
        arrays = make_batch(split, idx).arrays()
        logps, counts = sequence_logps(model, *arrays[:4])
        p = len(idx)
        wins = (logps[:p] > logps[p:]).astype(mx.float32).sum()
        totals = totals + mx.stack([-logps[:p].sum(), counts[:p].sum(), wins, mx.array(float(p))])
        mx.async_eval(totals)
    nll, tokens, won, pairs = cast(list[float], totals.tolist())
    return (nll / tokens if tokens else float("nan")), int(tokens), (won / pairs if pairs else float("nan"))
