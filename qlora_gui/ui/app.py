"""Start the app: `qlora-gui [DATASET] [--model DIR]`."""

from __future__ import annotations

import sys

from PySide6.QtCore import QEvent
from PySide6.QtWidgets import QApplication

from .. import __version__


class StudioApplication(QApplication):
    """Routes files opened from Finder or the Dock (QFileOpenEvent on macOS) to the dataset panel."""

    def __init__(self, argv: list[str]):
        super().__init__(argv)
        self.window = None
        self.pending: list[str] = []

    def event(self, event) -> bool:
        if event.type() == QEvent.Type.FileOpen:
            path = event.file()
            if self.window is not None:
                self.window.open_dataset(path)
            else:
                self.pending.append(path)
            return True
        return super().event(event)


def create_app() -> QApplication:
    app = QApplication.instance() or StudioApplication(sys.argv[:1])
    app.setOrganizationName("QLoRA Studio")
    app.setApplicationName("QLoRA Studio")
    app.setApplicationVersion(__version__)
    return app


def run_app(dataset: str | None = None, model: str | None = None) -> int:
    from .main_window import MainWindow

    app = create_app()
    window = MainWindow()
    if isinstance(app, StudioApplication):
        app.window = window
        for path in app.pending:
            window.open_dataset(path)
    if model and not window.model.select_path(model):
        print(f"warning: {model} is not a model folder (config.json and *.safetensors)", file=sys.stderr)
    if dataset:
        window.open_dataset(dataset)
    window.show()
    return app.exec()
