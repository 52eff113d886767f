"""How a model ranks the two answers of held-out preference pairs."""

from __future__ import annotations

from dataclasses import dataclass

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from ..data.batching import make_batch
from ..data.encode import EncodedSplit
from ..train.losses import ChunkedLoss
from ..train.preference import sequence_logps


@dataclass
class PairScores:
    """One model's summed log-probabilities of each pair's answers, and its loss on the chosen ones."""

    chosen: np.ndarray
    rejected: np.ndarray
    loss: float  # the chosen answers' mean per-token loss
    tokens: int  # ... over this many tokens

    @property
    def accuracy(self) -> float:
        """The share of pairs whose chosen answer this model finds likelier than the rejected one."""
        return float((self.chosen > self.rejected).mean()) if len(self.chosen) else float("nan")

    def reward_accuracy(self, base: PairScores) -> float:
        """DPO's measure: the share of pairs where the chosen answer gained more log-probability over the base
        than the rejected one did (what a DPO run's validation reports)."""
        return float(((self.chosen - base.chosen) > (self.rejected - base.rejected)).mean())


def pair_scores(
    model: nn.Module, split: EncodedSplit, order: list[np.ndarray], head: ChunkedLoss | None = None
) -> PairScores:
    """Scores over the pairs in `order`, one host read per batch (`head`: see `sequence_logps`)."""
    chosen, rejected, nll, tokens = [], [], 0.0, 0
    for idx in order:
        batch = make_batch(split, idx)
        inputs, positions, targets, weights = batch.arrays()[:4]
        logps, counts = sequence_logps(model, inputs, positions, targets, weights, head)
        p = len(idx)
        values = np.array(mx.concatenate([logps, counts[:p].sum()[None]]))
        chosen.append(values[:p])
        rejected.append(values[p : 2 * p])
        nll -= float(values[:p].sum())
        tokens += int(values[-1])
    return PairScores(
        np.concatenate(chosen) if chosen else np.zeros(0),
        np.concatenate(rejected) if rejected else np.zeros(0),
        nll / tokens if tokens else float("nan"),
        tokens,
    )
