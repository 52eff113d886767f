"""The desktop around the app: files dropped on the window, folders handed to the file manager (saying so
when there is none) or to the trash."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QFile, QMimeData, QStandardPaths, Qt, QUrl
from PySide6.QtGui import QDesktopServices, QGuiApplication
from PySide6.QtWidgets import QMessageBox, QWidget

from ..core.data.intake import DATA_SUFFIXES


def dropped_data_path(mime: QMimeData) -> str | None:
    """The first dropped file or folder the app can read as data (a folder, .jsonl or .json)."""
    for url in mime.urls() if mime.hasUrls() else []:
        path = Path(url.toLocalFile())
        if path.is_dir() or path.suffix.lower() in DATA_SUFFIXES:
            return str(path)
    return None


def open_folder(path: str | Path, parent: QWidget | None = None) -> bool:
    """Open `path` in the file manager; where that fails (no file manager registered, say), show a
    non-blocking message with the path and a button that copies it. Returns whether it opened."""
    if Path(path).exists() and QDesktopServices.openUrl(QUrl.fromLocalFile(str(path))):
        return True
    why = "No file manager could open it." if Path(path).exists() else "It no longer exists (moved or deleted?)."
    box = QMessageBox(
        QMessageBox.Icon.Information, "Could not open the folder", f"{why} The folder is:\n\n{path}", parent=parent
    )
    box.setObjectName("open-folder-failed")
    copy = box.addButton("Copy path", QMessageBox.ButtonRole.ActionRole)
    box.addButton(QMessageBox.StandardButton.Close)
    copy.clicked.connect(lambda: QGuiApplication.clipboard().setText(str(path)))
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    box.open()  # window-modal, never blocks the event loop
    return False


def move_to_trash(path: str | Path) -> bool:
    """Into the system's trash (restorable); False, with nothing changed, where that is not possible."""
    # Qt's freedesktop trash needs the data folder to exist (a fresh home may lack ~/.local/share).
    Path(QStandardPaths.writableLocation(QStandardPaths.StandardLocation.GenericDataLocation)).mkdir(
        parents=True, exist_ok=True
    )
    return QFile.moveToTrash(str(path))
