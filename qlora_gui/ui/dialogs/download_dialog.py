"""Download a model from the Hugging Face Hub by repo id, with a progress bar."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QLabel, QLineEdit, QProgressBar, QVBoxLayout

from ...core.model.download import download_model
from ..workers.jobs import start_job


class DownloadDialog(QDialog):
    """Download from the Hugging Face Hub by repo id, with a progress bar."""

    downloaded = Signal(str)
    progressed = Signal(int, int)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Download from Hugging Face")
        self.repo = QLineEdit(placeholderText="owner/name, e.g. mlx-community/Qwen2.5-0.5B-Instruct-4bit")
        self.bar = QProgressBar()
        self.bar.setRange(0, 0)
        self.bar.hide()
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        self.download = self.buttons.addButton("Download", QDialogButtonBox.ButtonRole.AcceptRole)
        self.download.clicked.connect(self.start)
        self.buttons.rejected.connect(self.reject)
        self.progressed.connect(self._on_progress)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("Repository id:"))
        layout.addWidget(self.repo)
        layout.addWidget(self.bar)
        layout.addWidget(self.status)
        layout.addWidget(self.buttons)
        self.resize(520, 180)

    def start(self) -> None:
        self.download.setEnabled(False)
        self.bar.show()
        self.status.setText("Starting…")
        start_job(download_model, self.repo.text(), self.progressed.emit, on_done=self._done, on_failed=self._failed)

    def _on_progress(self, done: int, total: int) -> None:
        self.bar.setRange(0, 1000)
        self.bar.setValue(int(1000 * done / max(total, 1)))
        self.status.setText(f"{done / 1e6:.0f} of {total / 1e6:.0f} MB")

    def _done(self, path) -> None:
        self.bar.hide()
        self.status.setText(f"Downloaded to {path}")
        self.download.setEnabled(True)
        self.downloaded.emit(str(path))

    def _failed(self, message: str, details: str) -> None:
        self.bar.hide()
        self.status.setText(message)
        self.download.setEnabled(True)
