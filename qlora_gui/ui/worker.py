"""The training worker: the core Trainer in its own thread, its events turned into Qt signals.

The model is loaded inside `run()`, in the worker thread, because MLX streams
belong to the thread that creates them. The trainer's callback only puts each
event, as a plain dict, on a thread-safe queue; a timer on the GUI thread
drains it and emits the signals there. No Qt signal carries a Python object
across threads (PySide6 6.8+ can crash on those: PYSIDE-3124).
"""

from __future__ import annotations

import queue
import threading
import traceback
from pathlib import Path

from PySide6.QtCore import QThread, QTimer, Signal, Slot

from ..core.config import TrainConfig
from ..core.events import (CheckpointSaved, Event, Failed, Finished, RunStarted, StepReport, TrainWarning,
                           ValidationResult)
from .jobs import register


DRAIN_MS = 50


class TrainingWorker(QThread):
    started_run = Signal(dict)
    progress = Signal(dict)
    validation = Signal(dict)
    warning = Signal(dict)
    checkpoint_saved = Signal(dict)
    run_finished = Signal(dict)
    run_failed = Signal(dict)

    def __init__(self, config: TrainConfig, resume_from: str | Path | None = None, parent=None):
        super().__init__(parent)
        self.config = config
        self._resume_from = resume_from
        self._trainer = None
        self._pending: list[str] = []  # stop/pause asked before the trainer existed
        self._lock = threading.Lock()
        self._events: queue.SimpleQueue = queue.SimpleQueue()
        self._drain_timer = QTimer(self)
        self._drain_timer.setInterval(DRAIN_MS)
        self._drain_timer.timeout.connect(self._drain)
        self.finished.connect(self._on_thread_finished)
        register(self)

    def start(self, *args) -> None:
        self._drain_timer.start()
        super().start(*args)

    # control, from the GUI thread
    def stop(self) -> None:
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

    def _on_event(self, event: Event) -> None:
        """Worker thread: hand the event over as plain values."""
        self._events.put((type(event), event.to_dict()))

    @Slot()
    def _on_thread_finished(self) -> None:
        self._drain_timer.stop()
        self._drain()

    @Slot()
    def _drain(self) -> None:
        """GUI thread: emit every event that has arrived, in order."""
        while True:
            try:
                kind, payload = self._events.get_nowait()
            except queue.Empty:
                return
            self._emit(kind, payload)

    def _emit(self, event: type, payload: dict) -> None:
        signal = {StepReport: self.progress, ValidationResult: self.validation, TrainWarning: self.warning,
                  CheckpointSaved: self.checkpoint_saved, RunStarted: self.started_run,
                  Finished: self.run_finished, Failed: self.run_failed}[event]
        signal.emit(payload)

    def run(self) -> None:
        try:
            from ..core.trainer import Trainer

            trainer = Trainer(self.config, self._on_event, resume_from=self._resume_from)
            with self._lock:
                self._trainer = trainer
                pending = list(self._pending)
            for what in pending:
                getattr(trainer, what)()
            trainer.run()  # emits finished or failed itself; never raises
        except Exception as e:  # a failure to even start still reaches the GUI as a message
            self._on_event(Failed(f"could not start training: {e}", traceback.format_exc()))
