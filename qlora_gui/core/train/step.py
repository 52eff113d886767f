"""One optimizer step: token-weighted accumulation in a compiled graph, one host read per step.

A step of one micro-batch is one compiled call: forward, backward, a finiteness
check and the optimizer's update. The check is one reduction per gradient tensor
(its sum, or with clipping its squared norm, which the clipping then reuses);
a micro-batch whose loss or gradient is not finite, or whose mean loss is absurd,
leaves the model and the optimizer state as they were, chosen inside the graph
(`mx.where`, which fuses into the update's elementwise work). Accumulating, each
micro-batch adds its summed loss, trained-token count and gradient to the step's
sums unless it is bad, and the last call also updates. Summing first and
dividing once by all trained tokens makes N micro-batches give exactly the step
of one batch holding their rows. The step's numbers reach the host once, after
the whole step is queued. Model, optimizer and random state are the compiled
functions' inputs and outputs, as in mlx-lm's trainer, so dropout follows (seed, step).
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
from .gated_update import gated_update
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

    @property
    def trained_tokens(self) -> int:
        """The count, except for a preference loss: it counts pairs, and its first further sum is the tokens."""
        return int(self.stats[0]) if self.stats else self.tokens


@dataclass
class LossTotals:
    """A loss summed over batches: the loss, the count it is divided by (trained tokens, or pairs) and the loss's
    further sums (preference.PREFERENCE_STATS)."""

    loss_sum: float
    count: float
    stats: list[float] = field(default_factory=list)

    @classmethod
    def of(cls, numbers: list[float]) -> LossTotals:
        return cls(numbers[0], numbers[1], list(numbers[2:]))

    def as_list(self) -> list[float]:
        return [self.loss_sum, self.count, *self.stats]

    @property
    def mean_loss(self) -> float:
        return self.loss_sum / self.count if self.count else float("nan")

    @property
    def trained_tokens(self) -> int:
        return int(self.stats[0] if self.stats else self.count)


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
        if not optimizer._initialized:  # its state must exist before the step reads it (the update keeps it)
            optimizer.init(model.trainable_parameters())
        self.state = [model.state, optimizer.state, mx.random.state]
        self.updates = int(optimizer.step.item())  # counted here, so reading the rate never waits
        value_and_grad = nn.value_and_grad(model, loss_fn)

        def forward_backward(*arrays: mx.array) -> tuple[Any, mx.array, mx.array, mx.array, mx.array]:
            """The batch's arrays are the loss's: inputs, positions, targets, weights (and a reference).

            Returns the gradient, whether the micro-batch is kept, its sums (zero when not), its [flag, loss,
            count], and the gradient's squared norm when clipping (else the sum of its elements): one
            reduction per gradient tensor tells whether any element is not finite (a NaN or an infinity
            makes the sum one) and, clipping, gives the global norm as well."""
            out, g = value_and_grad(model, *arrays)
            loss, count = out[0], out[1]
            check = gradient_check(g)
            mean = loss / mx.maximum(count, 1)
            flag = mx.where(
                ~mx.isfinite(loss), 1, mx.where(~mx.isfinite(check), 2, mx.where(mean > MAX_SANE_LOSS, 3, 0))
            )
            info = mx.stack([flag.astype(mx.float32), loss, count.astype(mx.float32)])
            numbers = info[1:]  # a view: one concatenation makes both
            sums = mx.concatenate([numbers, out[2].astype(mx.float32)]) if len(out) > 2 else numbers
            return g, flag == 0, mx.where(flag == 0, sums, 0.0), info, check

        def gradient_check(g: Any) -> mx.array:
            flat = [x for _, x in cast(Flat, tree_flatten(g))]
            if grad_clip > 0:  # a dot product per tensor: one kernel, float32 as the adapters
                parts = [(x.reshape(1, -1) @ x.reshape(-1, 1)).reshape(()).astype(mx.float32) for x in flat]
            else:
                parts = [x.sum().astype(mx.float32) for x in flat]
            return sum(parts, mx.array(0.0, dtype=mx.float32))

        def update(grads: Any, totals: mx.array, norm_squared: mx.array | None, ok: mx.array) -> None:
            """The optimizer's update from the summed gradient, kept only where `ok` (inside the graph: the
            choice fuses into the update's own elementwise work, so a skipped step costs no kernel; see
            gated_update.py)."""
            count = _count(totals)
            if grad_clip > 0:
                if norm_squared is None:
                    norm_squared = gradient_check(grads)
                norm = mx.sqrt(norm_squared) / count  # the mean gradient's global norm
                normalizer = mx.minimum(grad_clip / (norm + 1e-6), 1.0)
                grads = tree_map(lambda g: g / count * normalizer, grads)
            else:
                grads = tree_map(lambda g: g / count, grads)
            gated_update(optimizer, model, grads, ok)

        # A step of one micro-batch is one compiled call: forward, backward, the finiteness check and the
        # update, which a bad micro-batch leaves out inside the graph. Accumulating, a bad micro-batch is
        # kept out of the sums inside the graph and the last call also updates; the sums stay separate
        # calls for the tests and for data-parallel ranks, whose sums are added before anyone updates.
        def alone(*arrays: mx.array) -> Micro:
            g, _, totals, info, _ = forward_backward(*arrays)
            return g, totals, info

        def alone_update(*arrays: mx.array) -> tuple[mx.array, mx.array]:
            g, keep, totals, info, check = forward_backward(*arrays)
            update(g, totals, check if grad_clip > 0 else None, keep & (_count(totals) > 0))
            return totals, info

        def first(*arrays: mx.array) -> Micro:
            g, keep, totals, info, _ = forward_backward(*arrays)
            return tree_map(lambda new: mx.where(keep, new, 0), g), totals, info

        def more(grads: Any, totals: mx.array, *arrays: mx.array) -> Micro:
            g, keep, numbers, info, _ = forward_backward(*arrays)
            return tree_map(lambda acc, new: mx.where(keep, acc + new, acc), grads, g), totals + numbers, info

        def more_update(grads: Any, totals: mx.array, *arrays: mx.array) -> tuple[mx.array, mx.array]:
            grads, totals, info = more(grads, totals, *arrays)
            update(grads, totals, None, _count(totals) > 0)
            return totals, info

        def update_summed(grads: Any, totals: mx.array) -> None:
            update(grads, totals, None, _count(totals) > 0)

        def build(fn: Callable[..., Any]) -> Callable[..., Any]:
            return mx.compile(fn, inputs=self.state, outputs=self.state) if compiled else fn

        self._alone, self._first, self._more = build(alone), build(first), build(more)
        self._alone_update, self._more_update, self._update = (
            build(alone_update),
            build(more_update),
            build(update_summed),
        )
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
        alone = len(batches) == 1 and not self._ranks()
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

    def _ranks(self) -> bool:
        return self.group is not None and self.group.size() > 1

    def queued(self, batches: Iterable[Batch]) -> list[mx.array]:
        """One optimizer step queued, nothing read: its [loss sum, count, ...] and each micro-batch's [flag,
        loss, count], lazily; the model and the optimizer state hold the step's result, lazily. On one machine
        the update is inside the last micro-batch's compiled call; it keeps the state as it was when every
        micro-batch was bad."""
        batches = list(batches)
        if self._ranks() or not batches:
            grads, totals, infos = self.accumulate(batches)
            self._update(grads, totals)
            return [totals, *infos]
        if len(batches) == 1:
            totals, info = self._alone_update(*batches[0].arrays())
            return [totals, info]
        grads, totals, infos = self.accumulate(batches[:-1])
        totals, info = self._more_update(grads, totals, *batches[-1].arrays())
        return [totals, *infos, info]

    def __call__(self, batches: Iterable[Batch]) -> StepResult:
        numbers_lazy = self.queued(batches)
        mx.async_eval(self.state)
        numbers = cast(list[float], mx.concatenate(numbers_lazy).tolist())  # the step's one host read
        k = self.totals
        micro = [MicroResult(int(numbers[i]), numbers[i + 1], int(numbers[i + 2])) for i in range(k, len(numbers), 3)]
        tokens = int(numbers[1])
        self.updates += tokens > 0
        return StepResult(numbers[0], tokens, micro, tokens > 0, numbers[2:k])

    def learning_rate(self) -> float:
        """The rate of the last queued update, worked out on the CPU stream: reading the optimizer's own
        would wait for that update, which runs on the GPU while the next step is being built."""
        schedule = getattr(self.optimizer, "_schedulers", {}).get("learning_rate")
        if schedule is None:
            return self.optimizer.learning_rate.item()  # a constant, already evaluated
        with mx.stream(mx.cpu):
            return schedule(mx.array(max(self.updates - 1, 0), dtype=mx.uint64)).item()


def _count(totals: mx.array) -> mx.array:
    """totals[1] as a view (an integer index would be a gather: a kernel)."""
    return totals[1:2].reshape(())


def evaluate_totals(model: nn.Module, batches: Iterable[Batch], loss_fn: LossFn = token_loss) -> LossTotals:
    """The loss's totals over batches; no gradients, one host read at the end."""
    totals: mx.array | None = None
    for batch in batches:
        out = loss_fn(model, *batch.arrays())
        sums = mx.concatenate([mx.stack([out[0], out[1].astype(mx.float32)]), *out[2:]])
        if totals is not None:
            mx.eval(totals)  # one batch in flight while the next is built: MLX allocates what it queues
        totals = sums if totals is None else totals + sums
        mx.async_eval(totals)
    return LossTotals.of(cast(list[float], totals.tolist()) if totals is not None else [0.0, 0.0])


def evaluate_loss(model: nn.Module, batches: Iterable[Batch], loss_fn: LossFn = token_loss) -> tuple[float, int]:
    """Count-weighted mean loss over batches (per trained token, or per pair)."""
    totals = evaluate_totals(model, batches, loss_fn)
    return totals.mean_loss, int(totals.count)
