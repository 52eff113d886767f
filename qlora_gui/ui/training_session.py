"""One training run at a time: the worker, its events routed to the Train tab, stop and close with a checkpoint."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QMessageBox, QWidget

from ..core.distributed.event_lines import LaunchNote
from ..core.events import (
    CheckpointSaved,
    Failed,
    Finished,
    GroupCompletions,
    PreferenceReport,
    Recovered,
    RewardReport,
    RunStarted,
    SampleAnswers,
    StepReport,
    TrainWarning,
    ValidationResult,
)
from ..core.memory import GB
from ..core.sleep_guard import SleepGuard
from .views.training_view import TrainingView
from .workers.training_worker import EarlierEvents, TrainingWorker


class TrainingSession(QObject):
    """Owns the training worker while it lives. The window asks it to start, pause, stop and close. While a run
    trains, the computer is kept from idle sleep (core/sleep_guard.py)."""

    ended = Signal()  # the run finished, stopped or failed (its thread may still be returning)
    thread_done = Signal()  # the worker thread is gone: a new run may start

    def __init__(self, view: TrainingView, owner: QWidget, sleep_guard: SleepGuard | None = None):
        super().__init__(owner)
        self.view, self.owner = view, owner
        self.sleep_guard = sleep_guard or SleepGuard()
        self.worker: TrainingWorker | None = None
        self.error_dialog: QMessageBox | None = None
        self.close_after_stop = False  # the window closes once the run has saved and its thread ended
        self._run_ended = False
        self._earlier: EarlierEvents | None = None  # a resumed run's history, read by the worker

    @property
    def busy_run(self) -> str | None:
        """The run folder being trained, which no other action may change."""
        return self.worker.config.adapter_path if self.worker else None

    def launch(self, worker: TrainingWorker, memory_budget: int, planned_steps: int | None = None) -> None:
        """Start the worker once the Train tab (shown by the caller) has painted its charts for this run."""
        self.worker, self._run_ended, self._earlier = worker, False, None
        v = self.view
        handlers = {
            EarlierEvents: lambda e: setattr(self, "_earlier", e),
            RunStarted: self._on_started,
            StepReport: v.on_progress,
            ValidationResult: v.on_validation,
            TrainWarning: v.on_warning,
            Recovered: v.on_recovery,
            SampleAnswers: v.on_samples,
            PreferenceReport: v.on_preference,
            RewardReport: v.on_rewards,
            GroupCompletions: v.on_completions,
            CheckpointSaved: v.on_checkpoint,
            LaunchNote: lambda e: v.status.setText(e.message),  # a run on several machines: check, copy, start
            Finished: self._on_finished,
            Failed: self._on_failed,
        }
        worker.event.connect(lambda event: handlers[type(event)](event))
        worker.finished.connect(self._on_thread_done)
        v.set_running(True)
        v.charts.set_memory_limit(worker.config.memory_limit_gb or memory_budget / GB)
        if planned_steps:
            v.charts.set_total_steps(planned_steps)  # the trainer's count: its RunStarted then changes nothing
        v.status.setText("Loading the model…")
        v.charts.redraw()
        v.charts.view.ci.layout.activate()  # laid out at the tab's size now, not after this paint
        # Painted now, before the trainer runs: painted once it reads the data, each of the charts' Python
        # callbacks would wait for the interpreter lock the trainer holds (pauses of 0.3-0.8 s on large data).
        v.repaint()
        self.sleep_guard.hold(f"Training {Path(worker.config.adapter_path).name}")
        worker.start()

    def pause(self, paused: bool) -> None:
        if self.worker:
            self.worker.pause() if paused else self.worker.resume()

    def stop(self) -> None:
        if self.worker:
            self.view.status.setText("Stopping after this step and saving a checkpoint…")
            self.worker.stop()

    def ready_to_close(self, confirm: Callable[[str, str], bool]) -> bool:
        """True when nothing trains. A running run is stopped with a checkpoint (once the user agrees) and the
        window closes when its thread has ended (`close_after_stop`)."""
        if self.worker is not None and self._run_ended:
            self.worker.wait()  # the run has ended; its thread is only returning
            self.worker = None
        if self.worker is None:
            return True
        if not self.close_after_stop:
            if not confirm("Training is running", "Stop training, save a checkpoint and quit?"):
                return False
            self.close_after_stop = True
            self.stop()
        return False

    def show_error(self, failure: Failed) -> None:
        box = QMessageBox(QMessageBox.Icon.Warning, "Training stopped", failure.message, parent=self.owner)
        if failure.problems:
            box.setInformativeText("\n".join(failure.problems))
        if failure.details:
            box.setDetailedText(failure.details)
        self.error_dialog = box
        box.open()  # window-modal, never blocks the event loop

    def _on_started(self, e: RunStarted) -> None:
        earlier = self._earlier.events if self._earlier and self._earlier.run_dir == e.run_dir else []
        self._earlier = None
        self.view.on_started(e, earlier)

    def _on_finished(self, e: Finished) -> None:
        self._run_ended = True
        self.sleep_guard.release()
        self.view.on_finished(e)
        self.ended.emit()

    def _on_failed(self, e: Failed) -> None:
        self._run_ended = True
        self.sleep_guard.release()
        self.view.on_failed(e)
        self.ended.emit()
        if not self.close_after_stop:
            self.show_error(e)

    def _on_thread_done(self) -> None:
        self.sleep_guard.release()  # however the thread ended (it may have died without a last event)
        self.worker = None
        self.view.set_running(False)
        self.thread_done.emit()
