"""A picture beside the prompt: dropped on it or browsed for, shown as a thumbnail, cleared with one click."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QDragEnterEvent, QDropEvent, QPixmap
from PySide6.QtWidgets import QFileDialog, QFrame, QHBoxLayout, QLabel, QPushButton, QVBoxLayout

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif")
SIDE = 120  # pixels a side of the thumbnail


def dropped_image(event: QDropEvent | QDragEnterEvent) -> str | None:
    """The first local picture file the drag carries, or None."""
    for url in event.mimeData().urls():
        path = url.toLocalFile()
        if path and Path(path).suffix.lower() in IMAGE_SUFFIXES:
            return path
    return None


class ImageDrop(QFrame):
    """Holds one picture path; `changed` carries the new path ('' when cleared)."""

    changed = Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.path = ""
        self.setAcceptDrops(True)
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setToolTip("The picture the model is asked about: drop an image file here, or browse for one")
        self.thumb = QLabel("Drop a picture here")
        self.thumb.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.thumb.setFixedSize(SIDE, SIDE)
        self.thumb.setWordWrap(True)
        self.browse_button = QPushButton("Browse…")
        self.browse_button.clicked.connect(self.browse)
        self.clear_button = QPushButton("Clear")
        self.clear_button.clicked.connect(lambda: self.set_path(""))
        buttons = QHBoxLayout()
        buttons.addWidget(self.browse_button)
        buttons.addWidget(self.clear_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.thumb, 0, Qt.AlignmentFlag.AlignHCenter)
        layout.addLayout(buttons)
        self.setMaximumWidth(SIDE + 40)
        self.set_path("")

    def set_path(self, path: str) -> None:
        pixmap = QPixmap(path) if path else QPixmap()
        if path and pixmap.isNull():
            self.thumb.setText(f"{Path(path).name}: not a picture Qt can read")
            path = ""
        elif path:
            self.thumb.setPixmap(
                pixmap.scaled(SIDE, SIDE, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.FastTransformation)
            )
            self.thumb.setToolTip(path)
        else:
            self.thumb.setPixmap(QPixmap())
            self.thumb.setText("Drop a picture here")
        self.clear_button.setEnabled(bool(path))
        if path != self.path:
            self.path = path
            self.changed.emit(path)

    def browse(self) -> None:
        patterns = " ".join(f"*{s}" for s in IMAGE_SUFFIXES)
        path, _ = QFileDialog.getOpenFileName(self, "Choose a picture", "", f"Pictures ({patterns})")
        if path:
            self.set_path(path)

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802 - Qt's name
        if dropped_image(event):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802 - Qt's name
        path = dropped_image(event)
        if path:
            self.set_path(path)
            event.acceptProposedAction()
