"""The app as the desktop sees it, offscreen: macOS's appearance followed live, errors in slots logged and said
in one line, the computer kept awake while a run trains."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from PySide6.QtCore import QObject, QSettings, Qt, Signal
from PySide6.QtGui import QColor, QGuiApplication, QPalette
from PySide6.QtWidgets import QApplication

from qlora_gui.core.events import Failed, Finished
from qlora_gui.core.memory import GB
from qlora_gui.ui import theme
from qlora_gui.ui.main_window import MainWindow
from qlora_gui.ui.training_session import TrainingSession
from qlora_gui.ui.views.training_view import TrainingView

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def store(tmp_path):
    return QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)


def chart_colors(window) -> tuple[QColor, str]:
    charts = window.training.charts
    label = charts.loss_legend.items[0][1]
    return charts.view.backgroundBrush().color(), label.item.toHtml().lower()


def test_on_macos_the_app_follows_the_system_appearance_live_and_has_no_theme_switch(
    qtbot, store, tmp_path, monkeypatch
):
    monkeypatch.setattr(theme, "FOLLOWS_SYSTEM", True)
    store.setValue("dark", True)  # a choice made elsewhere: the system decides on a Mac
    app = QApplication.instance()
    before = app.palette()
    window = MainWindow(settings=store, runs_root=tmp_path / "runs")
    qtbot.addWidget(window)
    try:
        assert not window.dark_action.isVisible() and not window.dark_action.isChecked()
        view_menu = next(a for a in window.menuBar().actions() if a.text() == "&View")
        assert not view_menu.isVisible()
        dark = theme.dark_palette()
        app.setPalette(dark)  # what Qt's macOS style does when System Settings switches to dark
        QGuiApplication.styleHints().colorSchemeChanged.emit(Qt.ColorScheme.Dark)
        base, text = dark.color(QPalette.ColorRole.Base), dark.color(QPalette.ColorRole.Text)
        qtbot.waitUntil(lambda: chart_colors(window)[0] == base, timeout=5000)
        assert text.name() in chart_colors(window)[1]  # the legends too, though their labels already existed
    finally:
        app.setPalette(before)


def test_elsewhere_the_view_menu_switches_the_theme_and_the_charts_follow(qtbot, store, tmp_path):
    assert not theme.FOLLOWS_SYSTEM  # this machine is not a Mac
    app = QApplication.instance()
    style = app.style().name()
    window = MainWindow(settings=store, runs_root=tmp_path / "runs")
    qtbot.addWidget(window)
    try:
        assert window.dark_action.isVisible()
        window.dark_action.trigger()
        dark = theme.dark_palette()
        assert chart_colors(window)[0] == dark.color(QPalette.ColorRole.Base)
        assert dark.color(QPalette.ColorRole.Text).name() in chart_colors(window)[1]
    finally:
        window.set_dark(False)
        app.setStyle(style)  # back to what the other tests run with


class FakeWorker(QObject):
    """What TrainingSession uses of a TrainingWorker, without a model."""

    event = Signal(object)
    finished = Signal()

    def __init__(self, run: str):
        super().__init__()
        self.config = SimpleNamespace(adapter_path=run, memory_limit_gb=None)
        self.stopped = False

    def start(self) -> None:
        pass

    def stop(self) -> None:
        self.stopped = True

    def wait(self) -> None:
        pass


class RecordingGuard:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def hold(self, reason: str) -> bool:
        self.calls.append(f"hold {reason}")
        return True

    def release(self) -> None:
        self.calls.append("release")


def finished(stopped: bool = False) -> Finished:
    return Finished(
        step=3,
        stopped=stopped,
        train_loss=1.0,
        val_loss=None,
        best_val_loss=None,
        test_loss=None,
        run_dir="/runs/run-1",
        elapsed=1.0,
    )


@pytest.mark.parametrize("end", ["finished", "failed", "stopped"])
def test_the_computer_is_kept_awake_from_the_start_of_a_run_to_its_end(qtbot, end):
    view = TrainingView()
    qtbot.addWidget(view)
    guard = RecordingGuard()
    session = TrainingSession(view, view, sleep_guard=guard)
    worker = FakeWorker("/runs/run-1")
    session.launch(worker, memory_budget=8 * GB)
    assert guard.calls == ["hold Training run-1"]
    if end == "finished":
        worker.event.emit(finished())
    elif end == "failed":
        worker.event.emit(Failed("out of memory"))
    else:
        session.stop()
        assert worker.stopped
        worker.event.emit(finished(stopped=True))
    assert guard.calls[-1] == "release"  # at the run's end, before its thread has returned
    worker.finished.emit()
    assert session.worker is None and guard.calls.count("hold Training run-1") == 1


SLOT_ERROR = """
from PySide6.QtCore import QObject, Signal, qWarning
from PySide6.QtWidgets import QMainWindow, QMessageBox
from qlora_gui.ui.app import create_app, install_error_reporting

app = create_app()
window = QMainWindow()
window.show()
install_error_reporting(window)

class Source(QObject):
    ping = Signal()

def slot():
    raise ValueError("boom in a slot")

source = Source()
source.ping.connect(slot)
source.ping.emit()
source.ping.emit()  # the same error again: logged again, but one message on screen
qWarning("a warning from Qt")
for _ in range(3):
    app.processEvents()
boxes = [b for b in window.findChildren(QMessageBox) if b.objectName() == "unexpected-error" and b.isVisible()]
print(len(boxes))
print(boxes[0].text())
"""


def test_an_exception_in_a_qt_slot_is_logged_and_said_in_one_line_without_a_traceback(tmp_path):
    env = {
        **os.environ,
        "HOME": str(tmp_path),
        "XDG_STATE_HOME": str(tmp_path / "state"),
        "QT_QPA_PLATFORM": "offscreen",
    }
    result = subprocess.run(
        [sys.executable, "-c", SLOT_ERROR], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    count, text = result.stdout.splitlines()[:2]
    assert count == "1" and "Unexpected ValueError: boom in a slot" in text and "Traceback" not in text
    log = next((tmp_path / "state").rglob("qlora-studio.log"))
    assert "Details are in" in text and str(log) in text
    logged = log.read_text()
    assert logged.count("ValueError: boom in a slot") == 2 and "Traceback" in logged and "in slot" in logged
    assert "Qt QtWarningMsg: a warning from Qt" in logged
