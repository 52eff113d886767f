"""The optimizer and its learning-rate schedule, built from the settings."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import mlx.core as mx
import mlx.optimizers as optim

from ..config import AUTO_WARMUP_SHARE, TrainConfig
from ..mlx_keys import OPTIMIZER_CLASS_NAMES

OPTIMIZER_CLASSES = {name: getattr(optim, cls) for name, cls in OPTIMIZER_CLASS_NAMES.items()}


def optimizer_options(cfg: TrainConfig) -> dict[str, Any]:
    """The chosen optimizer's own arguments from optimizer_config, as mlx-lm reads them: the mapping under its
    name ({adamw: {weight_decay: 0.05}}); none when its name is absent."""
    return dict(cfg.optimizer_config.get(cfg.optimizer) or {})


def state_copies(cfg: TrainConfig) -> float:
    """The optimizer's state per trained weight, in copies of the weights (for the memory estimate): Adam's two
    moments, SGD's and Muon's one velocity, Adafactor's factored second moment (about none for a matrix) plus a
    first moment when beta_1 is set."""
    if cfg.optimizer == "adafactor":
        return 1.0 if optimizer_options(cfg).get("beta_1") is not None else 0.0
    return {"adamw": 2.0, "adam": 2.0, "sgd": 1.0, "muon": 1.0}[cfg.optimizer]


def build_optimizer(cfg: TrainConfig, total_steps: int, lr_scale: float = 1.0) -> optim.Optimizer:
    """mlx-lm's schedule when the config gives one; else linear warmup, then cosine decay to 0. The whole
    schedule is scaled by lr_scale (halved after each recovery from divergence)."""
    if cfg.lr_schedule:
        from mlx_lm.tuner.utils import build_schedule

        base = build_schedule(cfg.lr_schedule)
        lr = base if lr_scale == 1.0 else (lambda step: base(step) * lr_scale)
    else:
        warmup = cfg.warmup_steps if cfg.warmup_steps is not None else int(AUTO_WARMUP_SHARE * total_steps)
        lr = warmup_cosine(cfg.learning_rate * lr_scale, min(warmup, max(total_steps - 1, 0)), total_steps)
    return OPTIMIZER_CLASSES[cfg.optimizer](learning_rate=lr, **optimizer_options(cfg))


def warmup_cosine(peak: float, warmup: int, total: int, end: float = 0.0) -> Callable[[mx.array], mx.array]:
    """Linear warmup over `warmup` updates, then cosine decay to `end` at `total`.

    MLX evaluates the schedule at update index s (from 0) before applying the
    update, so warmup uses (s + 1) / (warmup + 1): the first update is never 0.
    """
    decay = max(total - warmup, 1)

    def schedule(step: mx.array) -> mx.array:
        s = step.astype(mx.float32)
        warm = peak * (s + 1) / (warmup + 1)
        progress = mx.clip((s - warmup) / decay, 0.0, 1.0)
        cos = end + 0.5 * (peak - end) * (1 + mx.cos(math.pi * progress))
        return mx.where(s < warmup, warm, cos)

    return schedule
