"""The numbers a step report carries: loss and speed since the last report, elapsed time, ETA and memory."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from ..distributed.agreement import rank_shares
from ..events import PreferenceReport, StepReport
from ..memory import GB, sample


class Progress:
    """Accumulates steps between reports. Time spent paused is kept out of elapsed time and speed."""

    def __init__(self, total_steps: int, steps_per_epoch: int, ram_warn_share: float, group: Any = None):
        self.total_steps, self.steps_per_epoch = total_steps, steps_per_epoch
        self.group = group  # several ranks: each report also says each rank's share of the speed
        self.ram_warn_share = ram_warn_share
        self.start = time.perf_counter()
        self.paused = 0.0
        self.steps_this_session = 0
        self.last_loss: float | None = None  # the mean train loss of the last report
        self._ram_warned = False
        self._memory_now = 0  # bytes in use at the last report
        self._total_ram = sample().total_ram
        self._reset_window()

    def _reset_window(self) -> None:
        self._loss = 0.0
        self._count = self._tokens = self._steps = 0
        self._seconds = 0.0
        self._stats: list[float] = []
        self._rank_count = 0  # what this rank itself trained (its micro-batches' counts), on several ranks

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start - self.paused

    def add_step(
        self, loss_sum: float, count: int, seconds: float, tokens: int | None = None, stats: Sequence[float] = ()
    ) -> None:
        """A step's loss sum over `count` (trained tokens, or pairs), its time, its trained tokens (when they
        are not the count) and the loss's further sums."""
        self.steps_this_session += 1
        self._loss += loss_sum
        self._count += count
        self._tokens += count if tokens is None else tokens
        self._steps += 1
        self._seconds += seconds
        self._stats = [a + b for a, b in zip(self._stats, stats, strict=True)] if self._stats else list(stats)

    def add_rank_count(self, count: int) -> None:
        self._rank_count += count

    def preference_report(self, step: int) -> PreferenceReport | None:
        """The pairs' figures since the last report (call before `report`, which starts a new window)."""
        return PreferenceReport.of(step, self._count, self._stats) if self._stats and self._count else None

    def report(self, step: int, learning_rate: float, trained_tokens: int) -> StepReport:
        """The report for the steps since the last one; starts the next window."""
        mem = sample()
        elapsed = self.elapsed
        self.last_loss = self._loss / self._count if self._count else float("nan")
        secs = self._seconds
        event = StepReport(
            step=step,
            epoch=step / self.steps_per_epoch,
            loss=self.last_loss,
            learning_rate=learning_rate,
            tokens_per_sec=self._tokens / secs if secs else 0.0,
            steps_per_sec=self._steps / secs if secs else 0.0,
            trained_tokens=trained_tokens,
            elapsed=elapsed,
            eta=elapsed / self.steps_this_session * (self.total_steps - step),
            mlx_active_gb=mem.gb("mlx_active"),
            mlx_peak_gb=mem.gb("mlx_peak"),
            mlx_cache_gb=mem.gb("mlx_cache"),
            rss_gb=mem.gb("rss"),
        )
        if self.group is not None and self.group.size() > 1:  # one gather per report, never per step
            event.rank_tokens_per_sec = [event.tokens_per_sec * s for s in rank_shares(self.group, self._rank_count)]
        self._reset_window()
        self._memory_now = max(mem.rss, mem.mlx_active)
        return event

    def memory_warning(self) -> str | None:
        """Said once, the first time memory use (at a report) passes the share of RAM the settings allow."""
        used = self._memory_now
        if self._ram_warned or used <= self.ram_warn_share * self._total_ram:
            return None
        self._ram_warned = True
        return (
            f"memory use {used / GB:.1f} GB is above {self.ram_warn_share:.0%} of this machine's "
            f"{self._total_ram / GB:.0f} GB; lower the batch size or max_seq_length, or quantize the base"
        )
