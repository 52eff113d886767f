"""A run in a preference mode (DPO, ORPO): the data it needs, its loss, and DPO's reference, measured lazily."""

from __future__ import annotations

import time

import mlx.nn as nn
import numpy as np

from ..config import TrainConfig
from ..data.batching import epoch_batches, eval_batches, make_batch
from ..data.encode import EncodedSplit
from ..data.formats import is_preference, is_prompts
from ..errors import UserError
from ..inference.adapters import base_view
from .grpo import GrpoLoss
from .losses import ChunkedLoss, LossFn
from .preference import PreferenceLoss, pair_logps

PAIR_KEYS = '"prompt", "chosen" and "rejected" (or "messages" with "chosen" and "rejected")'
PROMPT_KEYS = '"prompt" (text or chat turns), with an optional "answer" and "system"'


def mode_mismatch(mode: str, data_format: str | None) -> str:
    """Why the training mode and the rows do not go together, naming what to change; "" when they do."""
    pairs, prompts = is_preference(data_format), is_prompts(data_format)
    if mode == "grpo":
        if prompts or not data_format:
            return ""
        return (
            f"GRPO learns from rewards on its own answers to prompts, rows with {PROMPT_KEYS}, but these are "
            f"{data_format} rows; give prompt rows or pick SFT, DPO or ORPO"
        )
    if prompts:
        return (
            "the rows are prompts without answers to train on: pick GRPO as the training mode (Settings › "
            "Training mode; --train-mode grpo), which learns from rewards"
        )
    if mode == "sft" and pairs:
        return (
            "the rows are preference pairs: pick DPO or ORPO as the training mode (Settings › Training mode; "
            "--train-mode)"
        )
    if mode != "sft" and not pairs and data_format:
        return (
            f"{mode.upper()} trains on preference pairs, rows with {PAIR_KEYS}, but these are {data_format} rows; "
            "give preference data or pick SFT"
        )
    return ""


def check_mode_fits_data(mode: str, data_format: str | None, data: str) -> None:
    """UserError, before any weights load, when the training mode and the rows do not go together."""
    mismatch = mode_mismatch(mode, data_format)
    if mismatch:
        raise UserError(f"{data}: {mismatch}")


def preference_loss(cfg: TrainConfig) -> LossFn | None:
    """The loss of a preference mode or of GRPO; None for SFT (whose loss the model decides)."""
    if cfg.train_mode == "grpo":
        sequence = cfg.importance_sampling_level == "sequence"
        return GrpoLoss(
            cfg.beta, cfg.epsilon, cfg.epsilon_high, cfg.grpo_loss_type, sequence, cfg.max_completion_length
        )
    return PreferenceLoss(cfg.train_mode, cfg.beta, cfg.label_smoothing) if cfg.train_mode != "sft" else None


def share_prefixes(loss: LossFn, data: dict[str, EncodedSplit]) -> None:
    """Batches of pairs compute each pair's common prefix once where the loss found the model can
    (prefix_sharing.py); else their rows stay whole."""
    if getattr(loss, "shares_prefix", False):
        for split in data.values():
            split.share_prefix = split.pairs > 0


class LazyReference:
    """DPO's reference, each answer's log-probability under the frozen base (the adapters switched off, the
    same weights), measured when a step or a validation first uses its pair and kept for the rest of the run.

    The first step starts at once and a short run pays only for the pairs it reads. Each pair is measured in
    one batch fixed by the data alone, whenever it is first needed: a training pair in the micro-batch of epoch
    0 that holds it (the step's own batch in epoch 0: nothing measured twice), a held-out pair in its
    split's evaluation batch. So the numbers never depend on when a pair was first needed, and a resumed run
    measures what an uninterrupted one did, to the bit."""

    def __init__(self, model: nn.Module, loss: LossFn, batch_size: int, seed: int, world: int = 1):
        self.model, self.batch_size, self.seed, self.world = model, batch_size, seed, world
        self.head = loss.head if isinstance(loss, PreferenceLoss) else None
        self.seconds, self.measured, self.pairs = 0.0, 0, 0  # spent so far, pairs measured, pairs there are
        self._homes: dict[int, tuple[list[np.ndarray], np.ndarray]] = {}  # by split: its batches, each pair's

    def start(self, data: dict[str, EncodedSplit]) -> None:
        """Every pair not measured yet (NaN), the training split's batches those of its first epoch."""
        for name, split in data.items():
            split.reference = np.full(len(split.tokens), np.nan, dtype=np.float32)
            if name == "train":  # every rank's part of every batch: a rank may meet any pair in a later epoch
                whole = epoch_batches(split.lengths, self.batch_size, self.seed, 0)
                batches = [part for b in whole for r in range(self.world) if len(part := b[r :: self.world])]
            else:
                batches = eval_batches(split.lengths, self.batch_size)
            home = np.zeros(split.pairs, dtype=np.int64)
            for i, idx in enumerate(batches):
                home[idx] = i
            self._homes[id(split)] = (batches, home)
            self.pairs += split.pairs

    def ensure(self, split: EncodedSplit, batches: list[np.ndarray]) -> None:
        """Measure the pairs of these batches that are not measured yet (in their home batches)."""
        if split.reference is None or id(split) not in self._homes or not batches:
            return
        needed = np.concatenate(batches)
        missing = needed[np.isnan(split.reference[needed])]
        if not len(missing):
            return
        t0 = time.perf_counter()
        homes, home = self._homes[id(split)]
        for h in np.unique(home[missing]):
            idx = homes[h]
            split.reference[np.concatenate([idx, idx + split.pairs])] = answer_logps(self.model, split, idx, self.head)
            self.measured += len(idx)
        self.seconds += time.perf_counter() - t0


def answer_logps(model: nn.Module, split: EncodedSplit, idx: np.ndarray, head: ChunkedLoss | None) -> np.ndarray:
    """The base's summed answer log-probability of pairs `idx`, chosen sides then rejected, in one batch."""
    was_training = model.training
    model.eval()
    try:
        with base_view(model):
            logps, _ = pair_logps(model, make_batch(split, idx).model_arrays(), head)
            return np.array(logps)
    finally:
        model.train(was_training)
