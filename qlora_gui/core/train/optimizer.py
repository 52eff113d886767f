"""The optimizer and its learning-rate schedule, built from the settings."""

from __future__ import annotations

import math
from collections.abc import Callable

import mlx.core as mx
import mlx.optimizers as optim

from .config import AUTO_WARMUP_SHARE, TrainConfig

OPTIMIZER_CLASSES = {"adamw": optim.AdamW, "adam": optim.Adam, "sgd": optim.SGD}


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
    extra = dict(cfg.optimizer_config.get(cfg.optimizer, cfg.optimizer_config) or {})
    return OPTIMIZER_CLASSES[cfg.optimizer](learning_rate=lr, **extra)


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
