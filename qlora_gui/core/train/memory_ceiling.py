"""With gradient checkpointing (memory first): MLX's memory limit held just above what a step needs.

MLX allocates an operation's output when it queues the operation, ahead of the device, and waits for queued
work only when too many tasks are in flight or its memory limit is passed (`eval_impl` in mlx/transforms.cpp).
So a step's peak holds, besides what the step must keep, the buffers of work queued ahead (on the CPU, for 4
layers of hidden 1024 and a 128k vocabulary with checkpointing: 0.35 GB above the weights, 0.26 GB when the
queue is held). A step that is the largest yet (in tokens or in width) runs with the limit at the memory in
use, so MLX drains its queue, at its task granularity, before each further allocation: its peak is about the
least the step can run in. Other steps run with the limit a margin above the largest need measured, where
queueing ahead still overlaps the work but stops before it costs memory. The limit is held only through a
step's forward and backward: validation, answers and the update run under the limit in force before. A
limit the user set is never raised.

On by default on the CPU backend only: on Metal and CUDA, MLX waits on whole command buffers and its
allocators empty their buffer caches while over the limit, and what that costs in time is not measured yet
(`bench/bench_step.py --ceiling` measures it).
"""

from __future__ import annotations

import mlx.core as mx

from ..data.batching import Batch
from ..memory import reset_peak

MARGIN = 1.15  # above the largest measured need: on the CPU, 1.1x cost no time and 1.0x cost half again


def ceiling_by_default() -> bool:
    """Whether a checkpointed run holds a ceiling on this backend (see the module's docstring)."""
    return mx.default_device().type == mx.DeviceType.cpu


def step_shape(batches: list[Batch]) -> tuple[int, int]:
    """A step's largest micro-batch in positions (rows x width), and its widest rows."""
    return max((b.inputs.size for b in batches), default=0), max((b.inputs.shape[1] for b in batches), default=0)


class MemoryCeiling:
    def __init__(self) -> None:
        self.user_limit = int(mx.get_memory_limit())  # the user's, or MLX's default
        self.need = 0  # bytes above a step's start: the largest measured
        self.measured = (0, 0)  # (tokens, width) of the largest step measured
        self.measurements = 0
        self._measuring = False
        self._start = 0

    def before_step(self, tokens: int, width: int) -> None:
        """Set the limit for a step whose widest micro-batch holds `tokens` positions, `width` per row."""
        self._measuring = self.need == 0 or tokens > self.measured[0] or width > self.measured[1]
        if self._measuring:
            mx.synchronize()  # the last update done: what is in use now is what the step starts from
            self.measured = (max(tokens, self.measured[0]), max(width, self.measured[1]))
        self._start = mx.get_active_memory()
        limit = self._start if self._measuring else self._start + int(MARGIN * self.need)
        mx.set_memory_limit(min(limit, self.user_limit))
        reset_peak()

    def after_step(self) -> None:
        """After the step's numbers reached the host (its forward and backward are done)."""
        if self._measuring:  # not from other steps: their peaks pass the limit by up to an op's outputs
            self.need = max(self.need, mx.get_peak_memory() - self._start, 1)
            self.measurements += 1
        mx.set_memory_limit(self.user_limit)

    def close(self) -> None:
        """Back to the limit in force before the run."""
        mx.set_memory_limit(self.user_limit)
