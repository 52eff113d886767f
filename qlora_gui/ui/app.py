"""Start the app: `qlora-gui [DATASET] [--model DIR]`."""

from __future__ import annotations

import sys
import time

from PySide6.QtCore import QEvent, QObject, Qt, QTimer, QtMsgType, Signal, qInstallMessageHandler
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QApplication, QMessageBox, QWidget

from .. import __version__
from ..core.app_log import install_crash_logging, write_log
from ..core.resources import resource_path


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


# How long a thread running Python keeps the interpreter lock while another waits for it (Python's default is
# 5 ms). Painting the charts calls into Python hundreds of times, each waiting for the lock while a run loads
# its data in Python: the first paint of the Train tab took 0.85 s, stalls reached 3.4 s; at 0.5 ms they
# stay under half a second, at no cost to training speed (bench/bench_gui.py).
SWITCH_INTERVAL_S = 0.0005


def create_app() -> QApplication:
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    app = QApplication.instance() or StudioApplication(sys.argv[:1])
    app.setOrganizationName("QLoRA Studio")
    app.setApplicationName("QLoRA Studio")
    app.setApplicationVersion(__version__)
    icon = resource_path("icons", "app.png")
    if icon.is_file():
        app.setWindowIcon(QIcon(str(icon)))
    return app


def _log_qt_message(mode, context, message: str) -> None:
    if mode != QtMsgType.QtDebugMsg:
        write_log(f"Qt {mode.name}: {message}")


def _report_error(window, exc: BaseException, log) -> None:
    """An exception no code caught (a slot, a thread): logged; the window says so in one line, no traceback.
    One message at a time: an error that repeats (in a paint, say) fills the log, not the screen."""
    shown = window.findChild(QMessageBox, "unexpected-error")
    if shown is not None and shown.isVisible():
        return
    where = f" Details are in {log}." if log else ""
    box = QMessageBox(
        QMessageBox.Icon.Warning,
        "Something went wrong",
        f"Unexpected {type(exc).__name__}: {exc}.{where} Your runs and checkpoints are untouched.",
        parent=window,
    )
    box.setObjectName("unexpected-error")
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    box.open()


class ErrorReporter(QObject):
    """Brings an uncaught exception from whichever thread raised it to the GUI thread, where the window says so
    (a queued signal: a timer started in a plain Python thread would never fire)."""

    raised = Signal(object, object)

    def __init__(self, window: QWidget):
        super().__init__(window)
        self.window = window
        self.raised.connect(self._show, Qt.ConnectionType.QueuedConnection)

    def _show(self, exc: BaseException, log) -> None:
        _report_error(self.window, exc, log)


def install_error_reporting(window: QWidget) -> ErrorReporter:
    """Started from Finder nothing reads stderr: uncaught exceptions (those raised in a Qt slot included: PySide
    hands them to sys.excepthook), hard crashes and Qt's warnings go to the log, and the window says so."""
    reporter = ErrorReporter(window)

    def tell(exc: BaseException, log) -> None:
        try:
            reporter.raised.emit(exc, log)
        except RuntimeError:
            pass  # the window is gone (the app is closing): the log has it

    install_crash_logging(tell)
    qInstallMessageHandler(_log_qt_message)
    return reporter


def run_app(
    dataset: str | None = None, model: str | None = None, smoke_test: bool = False, started: float | None = None
) -> int:
    """Open the window. `smoke_test` closes it as soon as it is shown (the bundle test uses it)."""
    from .main_window import MainWindow

    app = create_app()
    window = MainWindow()
    install_error_reporting(window)
    if isinstance(app, StudioApplication):
        app.window = window
        for path in app.pending:
            window.open_dataset(path)
    if model and not window.model.select_path(model):
        print(f"warning: {model} is not a model folder (config.json and *.safetensors)", file=sys.stderr)
    if dataset:
        window.open_dataset(dataset)
    window.show()
    if smoke_test:

        def report_and_close() -> None:
            since = f" {time.perf_counter() - started:.2f} s after start" if started is not None else ""
            print(f"window shown{since}: {window.windowTitle()}, {window.tabs.count()} tabs", flush=True)
            window.close()

        QTimer.singleShot(0, report_and_close)  # runs once the event loop has shown the window
    return app.exec()
