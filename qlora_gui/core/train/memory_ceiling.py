"""With gradient checkpointing (memory first): MLX's memory limit kept just above what a step needs.

MLX allocates an operation's output when it queues the operation, ahead of the device, and only waits for
queued work when too many tasks are in flight or its memory limit is passed. So a step's peak holds, besides
what the step must keep, the buffers of work queued ahead (measured on the CPU for the Llama-3.2-1B layer
shape with 4 layers: 0.35 GB above the weights with checkpointing, 0.26 GB when every operation waits for
the one before). The first step runs with the limit at the memory in use, so each allocation waits for queued
work to finish: its peak is the least that step can run in. Later steps run with the limit a margin above
that (scaled by their tokens), where queueing ahead costs no time but stops before it costs memory; a batch
much longer than the measured one is measured again. A limit the user set is never raised.
"""

from __future__ import annotations

import mlx.core as mx

from ..memory import reset_peak

MARGIN = 1.15  # above the measured need: on the CPU, 1.1x cost no time and 1.0x cost half again
REMEASURE_ABOVE = 1.5  # a micro-batch with this many times the measured tokens is measured again


class MemoryCeiling:
    def __init__(self) -> None:
        self.user_limit = int(mx.get_memory_limit())  # the user's, or MLX's default
        self.need_per_token: float | None = None  # bytes above the step's start, per token of its widest batch
        self.measured_tokens = 0
        self._measuring = False
        self._start = 0
        self._tokens = 0

    def before_step(self, tokens: int) -> None:
        """Set the limit for a step whose widest micro-batch holds `tokens` positions (rows x width)."""
        self._start, self._tokens = mx.get_active_memory(), tokens
        self._measuring = self.need_per_token is None or tokens > REMEASURE_ABOVE * self.measured_tokens
        if self._measuring:
            limit = self._start
            reset_peak()
        else:
            assert self.need_per_token is not None
            limit = self._start + int(MARGIN * self.need_per_token * max(tokens, self.measured_tokens))
        mx.set_memory_limit(min(limit, self.user_limit))

    def after_step(self) -> None:
        """After the step's numbers reached the host (its forward and backward are done)."""
        if self._measuring:
            need = max(mx.get_peak_memory() - self._start, 1)
            self.need_per_token, self.measured_tokens = need / max(self._tokens, 1), self._tokens
            self._measuring = False

    def close(self) -> None:
        """Back to the limit in force before the run."""
        mx.set_memory_limit(self.user_limit)
