"""The training worker: the core Trainer in its own thread, its events delivered to the GUI thread.

The model is loaded inside `run()`, in the worker thread, because MLX streams
belong to the thread that creates them. The trainer's callback posts each event
(RunStarted, StepReport, ValidationResult, TrainWarning, CheckpointSaved,
Finished or Failed from core.events) as it is; EventWorker delivers them on the
GUI thread through `event`.
"""

from __future__ import annotations

import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QObject

from ...core.config import TrainConfig
from ...core.events import Event, Failed, RunStarted
from ...core.runs.history import read_events
from .event_worker import EventWorker


@dataclass
class EarlierEvents:
    """A resumed run's metrics.jsonl up to its RunStarted, posted just before it. Read in the worker thread: a
    long run's history (20,000 reports: tenths of a second to parse) never blocks the window as it resumes."""

    run_dir: str
    events: list[Event]


def posting_earlier_events(post: Callable[[object], None]) -> Callable[[Event], None]:
    """A trainer callback that posts each event, and a resumed run's earlier events before its RunStarted."""

    def callback(event: Event) -> None:
        if isinstance(event, RunStarted) and event.start_step > 0:
            post(EarlierEvents(event.run_dir, read_events(Path(event.run_dir))))
        post(event)

    return callback


class TrainingWorker(EventWorker):
    def __init__(self, config: TrainConfig, resume_from: str | Path | None = None, parent: QObject | None = None):
        super().__init__(parent)
        self.config = config
        self._resume_from = resume_from
        self._trainer = None
        self._pending: list[str] = []  # stop/pause asked before the trainer existed
        self._lock = threading.Lock()

    @property
    def trainer(self):  # the core's Trainer once run() has built it, else None
        return self._trainer

    # control, from the GUI thread
    def stop(self) -> None:
        """Finish the current step, save a checkpoint, then end with Finished(stopped=True)."""
        super().stop()
        self._control("stop")

    def pause(self) -> None:
        self._control("pause")

    def resume(self) -> None:
        self._control("resume")

    def _control(self, what: str) -> None:
        with self._lock:
            trainer = self._trainer
            if trainer is None:
                self._pending.append(what)
                return
        getattr(trainer, what)()

    def run(self) -> None:
        try:
            from ...core.train.trainer import Trainer

            trainer = Trainer(self.config, posting_earlier_events(self.post), resume_from=self._resume_from)
            with self._lock:
                self._trainer = trainer
                pending = list(self._pending)
            for what in pending:
                getattr(trainer, what)()
            trainer.run()  # emits finished or failed itself; never raises
        except Exception as e:  # a failure to even start still reaches the GUI as a message
            self.post(Failed(f"could not start training: {e}", traceback.format_exc()))
