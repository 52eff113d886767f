"""A run in a preference mode (DPO, ORPO): the data it needs, its loss, and DPO's reference measured once."""

from __future__ import annotations

import time

import mlx.nn as nn

from ..after.inference import base_view
from ..data.encode import EncodedSplit
from ..data.formats import is_preference
from ..errors import UserError
from .config import TrainConfig
from .losses import LossFn
from .preference import PreferenceLoss, reference_logps

PAIR_KEYS = '"prompt", "chosen" and "rejected" (or "messages" with "chosen" and "rejected")'


def mode_mismatch(mode: str, data_format: str | None) -> str:
    """Why the training mode and the rows do not go together, naming what to change; "" when they do."""
    pairs = is_preference(data_format)
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
    """The loss of a preference mode; None for SFT (whose loss the model decides)."""
    return PreferenceLoss(cfg.train_mode, cfg.beta, cfg.label_smoothing) if cfg.train_mode != "sft" else None


def measure_reference(model: nn.Module, loss: LossFn, data: dict[str, EncodedSplit], batch_size: int) -> str:
    """Fill each split's DPO reference: every answer's log-probability under the frozen base (the adapters
    switched off, the same weights), and say what it took."""
    t0 = time.perf_counter()
    head = loss.head if isinstance(loss, PreferenceLoss) else None
    with base_view(model):
        for split in data.values():
            split.reference = reference_logps(model, split, batch_size, head)
    pairs = sum(split.pairs for split in data.values())
    return f"DPO reference: the base's log-probabilities of {pairs} pairs' answers, in {time.perf_counter() - t0:.1f} s"
