"""GRPO's objective (Shao et al., 2024) and its variants, on batches of sampled answers.

For a prompt the model samples a group of G answers; each is scored by the rewards, and its advantage is its
reward against the group's: A = (r - mean) / (std + 1e-4) (Dr. GRPO: r - mean). A batch holds the groups'
answers as rows (prompt, then answer); only the answer's tokens are trained. Per answer token, with the
importance ratio rho = exp(log p - log p_old) (sequence level, GSPO: the answer's mean token log-ratio),
    loss = -min(rho * A, clip(rho, 1 - epsilon, 1 + epsilon_high) * A) + beta * KL,
KL the k3 estimate exp(d) - d - 1 with d = log p_base - log p, the base measured with the adapters off (the
same weights: no second model). Each sampling is used for one update, so p_old is p itself (held without
gradient): rho is 1 in value and carries the policy gradient. Aggregation, as the loss's (sum, count) pair,
so accumulated micro-batches give exactly the step of one batch holding them all:
- grpo: each answer's mean token loss, averaged over answers (sum of means, count answers);
- bnpo: every answer token weighs the same (sum over tokens, count tokens);
- dr_grpo: token sums over answers x max answer length (sum / max length, count answers).
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from .losses import ChunkedLoss, chunked_loss_for, logits_at

# The sums a GRPO step reports besides its loss: answer tokens, the KL summed over them.
GRPO_STATS = ("tokens", "kl")
LOSS_TYPES = ("grpo", "dr_grpo", "bnpo")
STD_FLOOR = 1e-4


def group_advantages(rewards: np.ndarray, scale_by_spread: bool = True) -> np.ndarray:
    """Each answer's advantage within its group; `rewards` is (groups, G). Zero for a group whose answers all
    scored the same (nothing to learn from it)."""
    mean = rewards.mean(axis=1, keepdims=True)
    centred = rewards - mean
    if not scale_by_spread:
        return centred.astype(np.float32)
    return (centred / (rewards.std(axis=1, keepdims=True) + STD_FLOOR)).astype(np.float32)


def token_logps(
    model: nn.Module, inputs: mx.array, positions: mx.array, targets: mx.array, head: ChunkedLoss | None
) -> mx.array:
    """Each trained position's float32 log-probability of its target, the logits made at those positions only
    where the model's head splits from its body."""
    logits = logits_at(model, inputs, positions, head)
    return -nn.losses.cross_entropy(logits, targets)


class GrpoLoss:
    """GRPO's loss, called like every loss (see losses.py) with each row's advantage and, when beta is not 0,
    the base's log-probability of each trained position."""

    stat_names = GRPO_STATS

    def __init__(
        self,
        beta: float,
        epsilon: float,
        epsilon_high: float | None,
        loss_type: str,
        sequence_level: bool,
        max_completion_length: int,
    ):
        if loss_type not in LOSS_TYPES:
            raise ValueError(f"GRPO loss type {loss_type!r} is not one of {', '.join(LOSS_TYPES)}")
        self.beta, self.epsilon = beta, epsilon
        self.epsilon_high = epsilon if epsilon_high is None else epsilon_high
        self.loss_type, self.sequence_level = loss_type, sequence_level
        self.max_completion_length = max_completion_length
        self.head: ChunkedLoss | None = None

    def bind(self, model: nn.Module, memory_first: bool = False) -> str:
        """Use the model's own head on the answers' positions alone where it splits from the body."""
        split, _ = chunked_loss_for(model, memory_first)
        self.head = split if isinstance(split, ChunkedLoss) else None
        return self.description

    @property
    def description(self) -> str:
        ratio = "sequence-level ratios (GSPO)" if self.sequence_level else "token-level ratios"
        kl = f"KL to the frozen base x{self.beta:g}" if self.beta else "no KL term"
        clip = f"clip [{1 - self.epsilon:g}, {1 + self.epsilon_high:g}]"
        where = "logits of the answers' tokens only" if self.head is not None else "full logits (no split head)"
        return f"loss: {self.loss_type} ({ratio}, {clip}, {kl}), {where}"

    def __call__(
        self,
        model: nn.Module,
        inputs: mx.array,
        positions: mx.array,
        targets: mx.array,
        weights: mx.array,
        advantages: mx.array,
        reference: mx.array | None = None,
    ) -> tuple[mx.array, mx.array, mx.array]:
        logp = token_logps(model, inputs, positions, targets, self.head)
        rows = inputs.shape[0]
        owner = (positions // inputs.shape[1])[:, None] == mx.arange(rows)[None]  # (K, rows)
        share = owner.astype(mx.float32) * weights[:, None]
        counts = weights @ share  # answer tokens per row
        log_ratio = logp - mx.stop_gradient(logp)
        if self.sequence_level:
            log_ratio = share @ ((log_ratio * weights) @ share / mx.maximum(counts, 1))
        ratio = mx.exp(log_ratio)
        advantage = share @ advantages.astype(mx.float32)  # each position's row's advantage
        clipped = mx.clip(ratio, 1 - self.epsilon, 1 + self.epsilon_high)
        per_token = -mx.minimum(ratio * advantage, clipped * advantage)
        kl = mx.zeros_like(logp)
        if self.beta and reference is not None:
            delta = mx.minimum(reference - logp, 20.0)  # exp stays finite however far the two drift apart
            kl = mx.maximum(mx.expm1(delta) - delta, 0)
            per_token = per_token + self.beta * kl
        per_token = per_token * weights
        answered = (counts > 0).astype(mx.float32)
        if self.loss_type == "grpo":
            loss, count = (per_token @ share / mx.maximum(counts, 1)).sum(), answered.sum()
        elif self.loss_type == "bnpo":
            loss, count = per_token.sum(), weights.sum()
        else:
            loss, count = per_token.sum() / self.max_completion_length, answered.sum()
        return loss, count, mx.stack([weights.sum(), (kl * weights).sum()])


def base_token_logps(
    model: nn.Module, inputs: mx.array, positions: mx.array, targets: mx.array, head: ChunkedLoss | None
) -> mx.array:
    """The positions' log-probabilities under the model as it is, without gradient (call inside `base_view`)."""
    return mx.stop_gradient(token_logps(model, inputs, positions, targets, head))
