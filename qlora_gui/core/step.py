"""The loss, one optimizer step with token-weighted accumulation, and evaluation.

The loss is swappable: any `loss_fn(model, inputs, targets, weights)` that
returns (sum of per-token losses, number of trained tokens) works. Summing
first and dividing once by all trained tokens makes N accumulated micro-batches
give exactly the gradient of one batch holding all their rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
from mlx.utils import tree_flatten, tree_map

LossFn = Callable[[nn.Module, mx.array, mx.array, mx.array], tuple[mx.array, mx.array]]
MAX_SANE_LOSS = 1e6


def token_loss(model: nn.Module, inputs: mx.array, targets: mx.array, weights: mx.array):
    """Summed next-token cross-entropy over trained tokens, in float32, and their count."""
    logits = model(inputs).astype(mx.float32)
    ce = nn.losses.cross_entropy(logits, targets) * weights
    return ce.sum(), weights.sum()


@dataclass
class MicroResult:
    ok: bool
    loss_sum: float
    tokens: int
    reason: str = ""


class GradientAccumulator:
    """Sums gradients and trained-token counts of the good micro-batches of one step."""

    def __init__(self, model: nn.Module, loss_fn: LossFn = token_loss):
        self.model = model
        self._value_and_grad = nn.value_and_grad(model, loss_fn)
        self.reset()

    def reset(self) -> None:
        self.grads = None
        self.tokens = 0
        self.loss_sum = 0.0
        self.micro_batches = 0

    def add(self, inputs: mx.array, targets: mx.array, weights: mx.array) -> MicroResult:
        """Run one micro-batch. A NaN/inf or absurd loss or gradient never reaches the sum."""
        (loss_sum, ntoks), grads = self._value_and_grad(self.model, inputs, targets, weights)
        sq = sum((g.astype(mx.float32) ** 2).sum() for _, g in tree_flatten(grads))
        candidate = grads if self.grads is None else tree_map(mx.add, self.grads, grads)
        mx.eval(loss_sum, ntoks, sq, candidate)  # one sync per micro-batch; nothing lazy carries over
        loss_v, ntoks_v, sq_v = loss_sum.item(), int(ntoks.item()), sq.item()
        if ntoks_v == 0:
            return MicroResult(True, 0.0, 0)
        mean = loss_v / ntoks_v
        if not (math.isfinite(loss_v) and math.isfinite(sq_v)):
            what = "loss" if not math.isfinite(loss_v) else "gradient"
            return MicroResult(False, loss_v, ntoks_v, f"{what} is not finite")
        if mean > MAX_SANE_LOSS:
            return MicroResult(False, loss_v, ntoks_v, f"loss {mean:.3g} is above {MAX_SANE_LOSS:g}")
        self.grads = candidate
        self.tokens += ntoks_v
        self.loss_sum += loss_v
        self.micro_batches += 1
        return MicroResult(True, loss_v, ntoks_v)



def mean_gradient(grad_sum, tokens: int):
    """The summed gradient over all trained tokens of the step: one big batch's gradient."""
    return tree_map(lambda g: g / tokens, grad_sum)


def reduce_across_ranks(grads, tokens: int, loss_sum: float, group=None):
    """The one place where data-parallel ranks combine their sums (identity on one machine)."""
    if group is None or group.size() == 1:
        return grads, tokens, loss_sum
    grads = tree_map(lambda g: mx.distributed.all_sum(g, group=group), grads)
    totals = mx.distributed.all_sum(mx.array([float(tokens), loss_sum]), group=group)
    return grads, int(totals[0].item()), float(totals[1].item())


def apply_update(model: nn.Module, optimizer: optim.Optimizer, grads, grad_clip: float) -> None:
    if grad_clip > 0:
        grads, _ = optim.clip_grad_norm(grads, grad_clip)
    optimizer.update(model, grads)
    mx.eval(model.trainable_parameters(), optimizer.state)


def evaluate_loss(model: nn.Module, batches, loss_fn: LossFn = token_loss) -> tuple[float, int]:
    """Token-weighted mean loss over batches of (inputs, targets, weights); no gradients."""
    total, tokens = 0.0, 0
    for inputs, targets, weights in batches:
        loss_sum, ntoks = loss_fn(model, mx.array(inputs), mx.array(targets), mx.array(weights))
        mx.eval(loss_sum, ntoks)
        total += loss_sum.item()
        tokens += int(ntoks.item())
    return (total / tokens if tokens else float("nan")), tokens


def warmup_cosine(peak: float, warmup: int, total: int, end: float = 0.0):
    """Linear warmup over `warmup` updates, then cosine decay to `end` at `total`.

    MLX evaluates the schedule at update index s (from 0) before applying the
    update, so warmup uses (s + 1) / (warmup + 1): the first update is never 0.
    """
    decay = max(total - warmup, 1)

    def schedule(step):
        s = step.astype(mx.float32)
        warm = peak * (s + 1) / (warmup + 1)
        progress = mx.clip((s - warmup) / decay, 0.0, 1.0)
        cos = end + 0.5 * (peak - end) * (1 + mx.cos(math.pi * progress))
        return mx.where(s < warmup, warm, cos)

    return schedule
