"""Pick a run and one of its checkpoints: the runs that have checkpoints, newest first, the best one chosen."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QPushButton, QWidget

from ...core.inference.adapters import checkpoint_choices
from ...core.runs.checkpoints import list_checkpoints
from ...core.runs.run_summary import list_runs


class RunPicker(QWidget):
    checkpoint_chosen = Signal()  # a checkpoint was picked, by the user or because its run was
    refresh_requested = Signal()

    def __init__(self, runs_root: Path, parent: QWidget | None = None):
        super().__init__(parent)
        self.runs_root = Path(runs_root)
        self.run_box = QComboBox()
        self.run_box.setMinimumContentsLength(28)
        self.run_box.currentIndexChanged.connect(self._fill_checkpoints)
        self.checkpoint_box = QComboBox()
        self.checkpoint_box.setMinimumContentsLength(22)
        self.checkpoint_box.activated.connect(lambda _i: self.checkpoint_chosen.emit())
        refresh = QPushButton("Refresh")
        refresh.clicked.connect(self.refresh_requested)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(QLabel("Run:"))
        row.addWidget(self.run_box, 2)
        row.addWidget(QLabel("Checkpoint:"))
        row.addWidget(self.checkpoint_box, 1)
        row.addWidget(refresh)

    @property
    def checkpoint(self) -> str | None:
        return self.checkpoint_box.currentData()

    def refresh(self) -> bool:
        """List the runs again, keeping the chosen one; False when no run has a checkpoint yet."""
        current = self.run_box.currentData()
        self.run_box.blockSignals(True)
        self.run_box.clear()
        for run in list_runs(self.runs_root):
            if list_checkpoints(run.path):
                self.run_box.addItem(f"{run.name}  ({run.model_name}, {run.status})", str(run.path))
        self.run_box.blockSignals(False)
        if self.run_box.count() == 0:
            self.checkpoint_box.clear()
            return False
        self.run_box.setCurrentIndex(max(self.run_box.findData(current), 0) if current else 0)
        self._fill_checkpoints()
        return True

    def select(self, run_dir: str, checkpoint: str | None = None) -> bool:
        """Choose a run (and one of its checkpoints); False when it is not in the list."""
        index = self.run_box.findData(str(run_dir))
        if index < 0:
            return False
        self.run_box.setCurrentIndex(index)
        if checkpoint:
            self.checkpoint_box.setCurrentIndex(max(self.checkpoint_box.findData(str(checkpoint)), 0))
        return True

    def _fill_checkpoints(self) -> None:
        run = self.run_box.currentData()
        self.checkpoint_box.clear()
        if not run:
            return
        choices, default = checkpoint_choices(run)
        for label, path in choices:
            self.checkpoint_box.addItem(label, path)
        if default:
            self.checkpoint_box.setCurrentIndex(self.checkpoint_box.findData(default))
        self.checkpoint_chosen.emit()
