"""One optimizer step: token-weighted accumulation in a compiled graph, one host read per step.

Each micro-batch runs a compiled forward/backward that adds its summed loss,
trained-token count and gradient to the step's sums, unless its loss or
gradient is not finite or its mean loss is absurd: that decision is taken
inside the graph (`mx.where`), so a bad micro-batch never reaches the sums and
costs no extra pass (a step of one micro-batch needs no sum: the host skips
its update when it is bad). Summing first and dividing once by all trained tokens
makes N micro-batches give exactly the step of one batch holding their rows.
The step's numbers reach the host once, after its last micro-batch; the update
is queued without waiting (MLX streams it while the next step is built).
Model, optimizer and random state are the compiled functions' inputs and
outputs, as in mlx-lm's trainer, so dropout follows (seed, step).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, cast

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
from mlx.utils import tree_flatten, tree_map

from ..data.batching import Batch
from ..distributed.collective import all_sum_together
from .losses import LossFn, token_loss

MAX_SANE_LOSS = 1e6
Flat = list[tuple[str, Any]]  # what tree_flatten returns for a tree (its stub also allows a dict)
Micro = tuple[Any, mx.array, mx.array]  # a micro-batch's (gradients, [loss sum, tokens], [flag, loss, tokens])
_REASONS = {1: "loss is not finite", 2: "gradient is not finite", 3: f"loss is above {MAX_SANE_LOSS:g}"}


@dataclass
class MicroResult:
    flag: int  # 0 kept; else why it was left out (see `reason`)
    loss_sum: float
    tokens: int  # the count the sums are divided by: trained tokens, or pairs

    @property
    def ok(self) -> bool:
        return self.flag == 0

    @property
    def reason(self) -> str:
        return _REASONS.get(self.flag, "")


@dataclass
class StepResult:
    loss_sum: float  # over the kept micro-batches (and all ranks)
    tokens: int  # the count the sums are divided by: trained tokens, or pairs
    micro: list[MicroResult]
    updated: bool
    stats: list[float] = field(default_factory=list)  # the loss's further sums (preference.PREFERENCE_STATS)


def reduce_across_ranks(
    grads: Any, totals: mx.array, group: mx.distributed.Group | None = None
) -> tuple[Any, mx.array]:
    """The one place where data-parallel ranks combine their sums (identity on one machine)."""
    if group is None or group.size() == 1:
        return grads, totals
    return all_sum_together(grads, totals, group)  # in few collectives: one per array costs a round trip each


class TrainStep:
    """Runs optimizer steps for one model and optimizer (build it after any optimizer state is restored)."""

    def __init__(
        self,
        model: nn.Module,
        optimizer: optim.Optimizer,
        loss_fn: LossFn = token_loss,
        grad_clip: float = 0.0,
        group: mx.distributed.Group | None = None,
        compiled: bool = True,
    ) -> None:
        self.model, self.optimizer, self.group = model, optimizer, group
        self.state = [model.state, optimizer.state, mx.random.state]
        self.updates = int(optimizer.step.item())  # counted here, so reading the rate never waits
        value_and_grad = nn.value_and_grad(model, loss_fn)

        def forward_backward(*arrays: mx.array) -> tuple[Any, mx.array, mx.array, mx.array]:
            """The batch's arrays are the loss's: inputs, positions, targets, weights (and a reference)."""
            out, g = value_and_grad(model, *arrays)
            loss, count = out[0], out[1]
            flat = cast(Flat, tree_flatten(g))
            square = sum((mx.square(x.astype(mx.float32)).sum() for _, x in flat), mx.array(0.0, dtype=mx.float32))
            mean = loss / mx.maximum(count, 1)
            flag = mx.where(
                ~mx.isfinite(loss), 1, mx.where(~mx.isfinite(square), 2, mx.where(mean > MAX_SANE_LOSS, 3, 0))
            )
            numbers = mx.stack([loss, count.astype(mx.float32)])
            sums = mx.concatenate([numbers, out[2].astype(mx.float32)]) if len(out) > 2 else numbers
            return (
                g,
                flag == 0,
                mx.where(flag == 0, sums, 0.0),
                mx.concatenate([flag.astype(mx.float32)[None], numbers]),
            )

        # Three forms, so the common step (one micro-batch) adds no per-tensor work to mlx-lm's: alone, its
        # gradient goes to the update as it is, and the host, which reads its flag before queueing the
        # update, skips a bad one. Accumulating, a bad micro-batch is kept out of the sum inside the graph.
        def alone(*arrays: mx.array) -> Micro:
            g, _, totals, info = forward_backward(*arrays)
            return g, totals, info

        def first(*arrays: mx.array) -> Micro:
            g, keep, totals, info = forward_backward(*arrays)
            return tree_map(lambda new: mx.where(keep, new, 0), g), totals, info

        def more(grads: Any, totals: mx.array, *arrays: mx.array) -> Micro:
            g, keep, numbers, info = forward_backward(*arrays)
            return tree_map(lambda acc, new: mx.where(keep, acc + new, acc), grads, g), totals + numbers, info

        def update(grads: Any, totals: mx.array) -> None:
            grads = tree_map(lambda g: g / totals[1], grads)
            if grad_clip > 0:
                grads, _ = optim.clip_grad_norm(grads, grad_clip)
            optimizer.update(model, grads)

        def build(fn: Callable[..., Any]) -> Callable[..., Any]:
            return mx.compile(fn, inputs=self.state, outputs=self.state) if compiled else fn

        self._alone, self._first, self._more, self._update = build(alone), build(first), build(more), build(update)
        self.totals = 2 + len(getattr(loss_fn, "stat_names", ()))  # loss sum, count, then the loss's statistics

    def accumulate(self, batches: Iterable[Batch]) -> tuple[Any, mx.array, list[mx.array]]:
        """Summed gradients, [loss sum, tokens] and each micro-batch's [flag, loss, tokens]; all lazy.

        The sums hold the kept micro-batches only; a lone micro-batch's gradient is returned as it is, with
        zero tokens when it is bad (the update never runs on zero tokens)."""
        batches = list(batches)
        if not batches:
            zero = mx.zeros((self.totals,), dtype=mx.float32)
            return reduce_across_ranks(tree_map(mx.zeros_like, self.model.trainable_parameters()), zero, self.group) + (
                [],
            )
        # Across ranks the sums are added before anyone sees a flag, so every gradient is masked there.
        alone = len(batches) == 1 and (self.group is None or self.group.size() == 1)
        infos = []
        for i, batch in enumerate(batches):
            if i == 0:
                grads, totals, info = (self._alone if alone else self._first)(*batch.arrays())
            else:
                grads, totals, info = self._more(grads, totals, *batch.arrays())
            mx.async_eval(grads, totals, info)  # bounds the graph without waiting for it
            infos.append(info)
        grads, totals = reduce_across_ranks(grads, totals, self.group)
        return grads, totals, infos

    def queued(self, batches: Iterable[Batch]) -> list[mx.array]:
        """One optimizer step queued and never read (for counting its kernels): its numbers, lazily; the
        model and optimizer state hold the updated values, lazily."""
        grads, totals, infos = self.accumulate(batches)
        self._update(grads, totals)
        return [totals, *infos]

    def __call__(self, batches: Iterable[Batch]) -> StepResult:
        grads, totals, infos = self.accumulate(batches)
        numbers = cast(list[float], mx.concatenate([totals, *infos]).tolist())  # the step's one host read
        k = self.totals
        micro = [MicroResult(int(numbers[i]), numbers[i + 1], int(numbers[i + 2])) for i in range(k, len(numbers), 3)]
        tokens = int(numbers[1])
        if tokens > 0:
            self._update(grads, totals)
            mx.async_eval(self.state)
            self.updates += 1
        return StepResult(numbers[0], tokens, micro, tokens > 0, numbers[2:k])

    def learning_rate(self) -> float:
        """The rate of the last queued update, worked out on the CPU stream: reading the optimizer's own
        would wait for that update, which runs on the GPU while the next step is being built."""
        schedule = getattr(self.optimizer, "_schedulers", {}).get("learning_rate")
        if schedule is None:
            return self.optimizer.learning_rate.item()  # a constant, already evaluated
        with mx.stream(mx.cpu):
            return schedule(mx.array(max(self.updates - 1, 0), dtype=mx.uint64)).item()


def mean_gradient(grads: Any, totals: mx.array) -> Any:
    """The summed gradient over all trained tokens of the step: one big batch's gradient."""
    return tree_map(lambda g: g / totals[1], grads)


def evaluate_totals(model: nn.Module, batches: Iterable[Batch], loss_fn: LossFn = token_loss) -> list[float]:
    """[loss sum, count, the loss's statistics...] over batches; no gradients, one host read at the end."""
    totals: mx.array | None = None
    for batch in batches:
        out = loss_fn(model, *batch.arrays())
        sums = mx.concatenate([mx.stack([out[0], out[1].astype(mx.float32)]), *out[2:]])
        totals = sums if totals is None else totals + sums
        mx.async_eval(totals)
    return cast(list[float], totals.tolist()) if totals is not None else [0.0, 0.0]


def evaluate_loss(model: nn.Module, batches: Iterable[Batch], loss_fn: LossFn = token_loss) -> tuple[float, int]:
    """Count-weighted mean loss over batches (per trained token, or per pair)."""
    total, count = evaluate_totals(model, batches, loss_fn)[:2]
    return (total / count if count else float("nan")), int(count)
