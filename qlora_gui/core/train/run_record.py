"""What a run leaves in its folder and reports as it goes: the lock, config.yaml, metrics.jsonl, checkpoints.

Only rank 0 of a distributed run owns the folder; the other ranks keep none of it and report nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import IO, Any

import mlx.core as mx

from ..config import TrainConfig
from ..errors import TrainingError
from ..events import CheckpointSaved, Event, EventCallback, TrainWarning
from ..runs import checkpoints as ckpt
from ..runs.run_folder import RunFolder
from ..runs.run_lock import RunLock
from .trackers import start_trackers


class RunRecord:
    def __init__(self, callback: EventCallback | None, is_main: bool):
        self._callback = callback
        self.is_main = is_main
        self.run: RunFolder | None = None
        self._metrics: IO[str] | None = None
        self._lock: RunLock | None = None
        self._trackers: list[Any] = []  # report_to's, on the rank that reports

    def open(self, run: RunFolder, cfg: TrainConfig) -> None:
        """Take the folder (one trainer per run folder), keep the settings once, append to the metrics."""
        self.run = run
        if not self.is_main:  # another rank's folder (its own time in a default name) would stay empty
            return
        run.path.mkdir(parents=True, exist_ok=True)
        self._lock = RunLock.acquire(run.path, "qlora-gui training")
        if not run.config.exists():
            ckpt.atomic_write_text(run.config, cfg.to_yaml())
        self._metrics = open(run.metrics, "a", encoding="utf-8")
        self._trackers = start_trackers(run, cfg)

    def close(self) -> None:
        for tracker in self._trackers:
            tracker.close()
        self._trackers = []
        if self._metrics is not None:
            self._metrics.close()
            self._metrics = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def emit(self, event: Event) -> None:
        """One line in metrics.jsonl (flushed: a crash keeps every event before it), then the callback."""
        if not self.is_main:
            return
        if self._metrics is not None:
            self._metrics.write(event.to_json_line())
            self._metrics.flush()
        for tracker in list(self._trackers):
            try:
                tracker.log(event)
            except Exception as e:  # a tracker is a view of the run, never a reason to end it
                self._trackers.remove(tracker)
                self.warn(f"{type(tracker).__name__} stopped logging ({type(e).__name__}: {e}); training goes on")
        if self._callback is not None:
            self._callback(event)

    def warn(self, message: str, step: int = 0, info: bool = False) -> None:
        self.emit(TrainWarning(message=message, step=step, info=info))

    def save(
        self,
        step: int,
        adapters: dict[str, mx.array],
        adapter_config: dict[str, Any],
        optimizer_state: dict[str, mx.array],
        state: ckpt.TrainState,
        keep_last: int,
        reason: str,
        is_best: bool,
    ) -> None:
        """A checkpoint (and the run's own adapter), then the oldest ones beyond keep_last go. A failed write
        stops the run with what failed, where, and which checkpoint is still intact."""
        if not self.is_main or self.run is None:
            return
        run_dir: Path = self.run.path
        try:
            path = ckpt.save_checkpoint(run_dir, step, adapters, adapter_config, optimizer_state, state.to_dict())
        except (OSError, RuntimeError) as e:  # MLX reports a failed write as a RuntimeError
            raise TrainingError(ckpt.save_failed_message(run_dir, step, e)) from e
        ckpt.prune_checkpoints(run_dir, keep_last)
        self.emit(CheckpointSaved(path=str(path), step=step, val_loss=state.val_loss, is_best=is_best, reason=reason))
