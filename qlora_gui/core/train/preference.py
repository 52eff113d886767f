"""Preference losses on pairs: DPO against the frozen base, and ORPO, which needs no reference.

A batch holds P pairs as 2P rows, chosen sides first; only each answer's tokens are trained. Each row's
summed log-probability of its answer (float32) feeds the loss:
- DPO (Rafailov et al., 2023), the sigmoid loss: with rewards r = beta * (log p(answer) - log p_base(answer)),
  loss = -(1 - s) * log sigmoid(r_chosen - r_rejected) - s * log sigmoid(r_rejected - r_chosen), s the label
  smoothing. The base's log-probabilities are measured once per run (the adapter off, the same weights), so
  the reference costs no second model and no second forward pass per step.
- ORPO (Hong et al., 2024): loss = the chosen answer's mean token NLL + beta * -log sigmoid(log odds ratio),
  with odds(y) = p / (1 - p) of the answer's mean token probability; rewards r = beta * mean token log p.
A pair is won when its chosen reward is above its rejected one. The loss is summed over pairs and divided by
their number, so accumulated micro-batches give exactly the step of one batch holding their pairs.
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from ..data.batching import eval_batches, make_batch
from ..data.encode import EncodedSplit
from .losses import ChunkedLoss, chunked_loss_for, logits_at
from .prefix_sharing import shared_hidden, shares_prefix

# The sums a preference step reports besides its loss, in this order.
PREFERENCE_STATS = ("tokens", "won", "margin", "chosen_logp", "rejected_logp")
MODES = ("dpo", "orpo")


def log_sigmoid(x: mx.array) -> mx.array:
    return -mx.logaddexp(mx.zeros_like(x), -x)


def sequence_logps(
    model: nn.Module,
    inputs: mx.array,
    positions: mx.array,
    targets: mx.array,
    weights: mx.array,
    head: ChunkedLoss | None = None,
) -> tuple[mx.array, mx.array]:
    """Each row's summed float32 log-probability of its trained tokens, and their number. With the model's
    head split from its body (`head`), only the answers' positions reach the output layer; else the full
    logits are made and the answers' taken from them."""
    logits = logits_at(model, inputs, positions, head)
    return _per_row(logits, positions // inputs.shape[1], inputs.shape[0], targets, weights)


def _per_row(
    logits: mx.array, owners: mx.array, rows: int, targets: mx.array, weights: mx.array
) -> tuple[mx.array, mx.array]:
    """Each row's summed log-probability of its entries' targets (float32 logits), and their number."""
    logp = -nn.losses.cross_entropy(logits, targets) * weights
    owner = owners[:, None] == mx.arange(rows)[None]  # (K, rows)
    share = owner.astype(mx.float32) * weights[:, None]
    return logp @ share, weights @ share


def pair_logps(model: nn.Module, arrays: tuple[mx.array, ...], head: ChunkedLoss | None) -> tuple[mx.array, mx.array]:
    """`sequence_logps` of a batch's arrays without its reference (`Batch.model_arrays`), in either layout: whole
    rows, or pairs sharing their prefix (prompts, left padding, continuations, index, owners, targets, weights:
    prefix_sharing.py, which needs the head split from the body)."""
    if len(arrays) == 4:
        return sequence_logps(model, *arrays, head=head)
    if head is None:
        raise ValueError("a batch of shared prefixes needs the model's head split from its body")
    prompts, left_padding, continuations, index, owners, targets, weights = arrays
    hidden = shared_hidden(model, prompts, left_padding, continuations, index)
    return _per_row(head.logits(hidden), owners, continuations.shape[0], targets, weights)


def dpo_losses(
    chosen: mx.array, rejected: mx.array, ref_chosen: mx.array, ref_rejected: mx.array, beta: float, smoothing: float
) -> tuple[mx.array, mx.array, mx.array]:
    """Per-pair DPO losses and the chosen and rejected rewards."""
    r_chosen, r_rejected = beta * (chosen - ref_chosen), beta * (rejected - ref_rejected)
    margin = r_chosen - r_rejected
    losses = -(1 - smoothing) * log_sigmoid(margin) - smoothing * log_sigmoid(-margin)
    return losses, r_chosen, r_rejected


def _log1m_exp(x: mx.array) -> mx.array:
    """log(1 - exp(x)) for x < 0, kept finite as x nears 0 (an answer the model is sure of)."""
    return mx.log1p(-mx.minimum(mx.exp(x), 1 - 1e-6))


def orpo_losses(
    chosen: mx.array, rejected: mx.array, n_chosen: mx.array, n_rejected: mx.array, beta: float
) -> tuple[mx.array, mx.array, mx.array]:
    """Per-pair ORPO losses and the chosen and rejected rewards."""
    mean_chosen = chosen / mx.maximum(n_chosen, 1)
    mean_rejected = rejected / mx.maximum(n_rejected, 1)
    log_odds = (mean_chosen - mean_rejected) - (_log1m_exp(mean_chosen) - _log1m_exp(mean_rejected))
    losses = -mean_chosen - beta * log_sigmoid(log_odds)
    return losses, beta * mean_chosen, beta * mean_rejected


class PreferenceLoss:
    """The loss for one mode; called like every loss (see losses.py), with the reference for DPO."""

    stat_names = PREFERENCE_STATS

    def __init__(self, mode: str, beta: float, label_smoothing: float = 0.0):
        if mode not in MODES:
            raise ValueError(f"preference mode {mode!r} is not one of {', '.join(MODES)}")
        self.mode, self.beta, self.label_smoothing = mode, beta, label_smoothing
        self.head: ChunkedLoss | None = None
        self.shares_prefix = False  # batches of pairs compute each pair's common prefix once (see `bind`)

    def bind(self, model: nn.Module, memory_first: bool = False) -> str:
        """Use the model's own head on the answers' positions alone where it splits from the body; the run's
        line on its loss. `memory_first`: see `chunk_positions`."""
        split, _ = chunked_loss_for(model, memory_first)
        self.head = split if isinstance(split, ChunkedLoss) else None
        # Memory first (gradient checkpointing) keeps whole rows: its recomputed blocks take no cache.
        self.shares_prefix = (
            self.head is not None
            and not memory_first
            and shares_prefix(model, lambda m, *arrays: pair_logps(m, arrays, self.head))
        )
        return self.description

    @property
    def description(self) -> str:
        """The run's line on its loss."""
        extra = f", label smoothing {self.label_smoothing:g}" if self.mode == "dpo" and self.label_smoothing else ""
        reference = "the frozen base as reference" if self.mode == "dpo" else "no reference"
        where = "logits of the answers' tokens only" if self.head is not None else "full logits (no split head)"
        shared = ", each pair's prompt computed once" if self.shares_prefix else ""
        return f"loss: {self.mode.upper()} (beta {self.beta:g}{extra}; {reference}), {where}{shared}"

    def __call__(self, model: nn.Module, *arrays: mx.array) -> tuple[mx.array, mx.array, mx.array]:
        """`arrays`: a batch's (`Batch.arrays`), in either layout, with DPO's reference last."""
        whole = len(arrays) in (4, 5)
        n = 4 if whole else 7
        reference = arrays[n] if len(arrays) > n else None
        logps, counts = pair_logps(model, arrays[:n], self.head)
        weights = arrays[n - 1]
        p = logps.shape[0] // 2
        chosen, rejected = logps[:p], logps[p:]
        if self.mode == "dpo":
            if reference is None:
                raise ValueError("DPO needs the base's log-probabilities of each answer (the batch has none)")
            losses, r_chosen, r_rejected = dpo_losses(
                chosen, rejected, reference[:p], reference[p:], self.beta, self.label_smoothing
            )
        else:
            losses, r_chosen, r_rejected = orpo_losses(chosen, rejected, counts[:p], counts[p:], self.beta)
        stats = mx.stack(
            [
                weights.sum(),
                (r_chosen > r_rejected).astype(mx.float32).sum(),
                (r_chosen - r_rejected).sum(),
                chosen.sum(),
                rejected.sum(),
            ]
        )
        return losses.sum(), mx.array(float(p)), stats


def reference_logps(
    model: nn.Module, split: EncodedSplit, batch_size: int, head: ChunkedLoss | None = None
) -> np.ndarray:
    """Each row's summed answer log-probability under the model as it is (call it inside `base_view`)."""
    out = np.zeros(len(split.tokens), dtype=np.float32)
    was_training = model.training
    model.eval()
    try:
        for idx in eval_batches(split.lengths, batch_size):
            logps, _ = pair_logps(model, make_batch(split, idx).model_arrays(), head)
            out[np.concatenate([idx, idx + split.pairs])] = np.array(logps)
    finally:
        model.train(was_training)
    return out
