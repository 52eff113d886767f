"""The worker of a run on several machines: mlx.launch supervised as a child process, rank 0's events delivered
to the GUI thread exactly as a local run's (the same Train tab, charts and controls).

`run()` does the check before any weights load, then starts the launcher and waits for it; the core's
DistributedRun reads rank 0's events (JSON lines) back into the same dataclasses. Pause, Resume and Stop are
lines on the launcher's standard input; the ranks agree on the step where they take effect, and Stop saves a
checkpoint as a local run does.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject

from ...core.config import TrainConfig
from ...core.distributed.supervisor import DistributedRun
from ..widgets.machines_box import MachinesChoice
from .event_worker import EventWorker
from .training_worker import TrainingWorker, posting_earlier_events

__all__ = ["LaunchWorker", "TrainingWorker", "worker_for"]


class LaunchWorker(EventWorker):
    def __init__(
        self,
        config: TrainConfig,
        choice: MachinesChoice,
        resume_from: str | Path | None = None,
        parent: QObject | None = None,
    ):
        super().__init__(parent)
        self.config = config
        self.run_on_machines = DistributedRun(
            config, choice.machines, posting_earlier_events(self.post), resume_from=resume_from, share=choice.share
        )

    def stop(self) -> None:
        """Every rank finishes the current step; rank 0 saves a checkpoint; then Finished(stopped=True)."""
        super().stop()
        self.run_on_machines.stop()

    def pause(self) -> None:
        self.run_on_machines.pause()

    def resume(self) -> None:
        self.run_on_machines.resume()

    def run(self) -> None:
        self.run_on_machines.run()  # posts every event, the last one Finished or Failed; never raises


def worker_for(
    config: TrainConfig, choice: MachinesChoice | None, resume_from: str | Path | None = None
) -> TrainingWorker | LaunchWorker:
    """The worker for the Settings tab's choice of machines: this Mac's own, or the launcher's."""
    if choice is None:
        return TrainingWorker(config, resume_from=resume_from)
    return LaunchWorker(config, choice, resume_from=resume_from)
