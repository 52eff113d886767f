"""GRPO's measure for Evaluate: the mean reward of the base's and the adapter's answers to held-out prompts, with
the rewards and sampling settings the run trained with (G answers to each prompt, drawn from a fixed seed)."""

from __future__ import annotations

import dataclasses
from typing import Any

import mlx.nn as nn

from ..config import TrainConfig, default_of
from ..data.encode import EncodedSplit
from ..data.intake import RawSplit
from ..inference.adapters import base_view
from ..train.grpo_mode import GrpoRollout
from ..train.preference_mode import preference_loss
from ..train.rewards import RewardOptions, RewardSet, choose_rewards

# The settings that decide how the answers are sampled and scored.
KEYS = (
    "group_size",
    "max_completion_length",
    "temperature",
    "top_p",
    "reward_functions",
    "reward_weights",
    "reward_functions_file",
    "reward_pattern",
    "reward_min_chars",
    "reward_max_chars",
    "seed",
    "batch_size",
)


def mean_rewards(
    model: nn.Module,
    tokenizer: Any,
    settings: dict[str, Any],
    split: EncodedSplit,
    raw: RawSplit,
    name: str,
    max_batches: int,
    include_base: bool,
) -> tuple[float | None, float | None]:
    """(base, adapter) mean reward on the split's first `max_batches` batches of prompts (-1: all)."""
    cfg = dataclasses.replace(TrainConfig(), train_mode="grpo", **{k: settings.get(k, default_of(k)) for k in KEYS})
    options = RewardOptions(cfg.reward_pattern, cfg.reward_min_chars, cfg.reward_max_chars)
    rewards = RewardSet(choose_rewards(cfg.reward_functions, cfg.reward_weights, cfg.reward_functions_file, options))
    loss = preference_loss(cfg)
    assert loss is not None
    rollout = GrpoRollout(cfg, tokenizer, rewards, loss, {name: raw})  # type: ignore[arg-type]
    base = None
    if include_base:
        with base_view(model):
            base = rollout.evaluate(model, split, name, max_batches, 0).reward_mean
    adapter = rollout.evaluate(model, split, name, max_batches, 0).reward_mean
    return base, adapter
