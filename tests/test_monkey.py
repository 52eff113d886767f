"""A seeded monkey: random clicks and keys over every tab while a run trains; nothing is lost, whatever happens.

MONKEY_SECONDS (default 30; the issue's two minutes are MONKEY_SECONDS=120) and MONKEY_SEED (default 0) pick
how long and which actions. Every action is printed, so a failure shows the seed and what led to it (the seed
fixes the choices; what the app shows at each moment also depends on how fast the run trains). Stop
(the button and the menu action) and closing the window are left out: the test itself resumes a paused run
and stops it with Stop & save once the time is up, and the stopped run's files must be whole.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time

import pytest
import yaml
from PySide6.QtCore import QObject, QPoint, QPointF, Qt, QUrl, Slot, qInstallMessageHandler
from PySide6.QtGui import QDesktopServices, QWheelEvent
from PySide6.QtWidgets import (
    QAbstractButton,
    QAbstractItemView,
    QAbstractSlider,
    QAbstractSpinBox,
    QApplication,
    QComboBox,
    QDialog,
    QFileDialog,
    QGraphicsView,
    QInputDialog,
    QLineEdit,
    QMenu,
    QMessageBox,
    QPlainTextEdit,
    QTabBar,
    QTextEdit,
    QWidget,
)
from test_gui import LONG, no_dangling_threads, store, wait_checked, wait_event, window  # noqa: F401  (fixtures)

from qlora_gui.core import app_log
from qlora_gui.core.events import Finished
from qlora_gui.core.runs.run_folder import ADAPTER_CONFIG, ADAPTER_FILE, OPTIMIZER_FILE, STATE_FILE, RunFolder
from qlora_gui.ui import app as app_module
from qlora_gui.ui.views import model_panel
from qlora_gui.ui.workers.jobs import running_threads

# What Qt says about this machine, not the app: the offscreen platform's missing features, fonts without OpenType.
ENVIRONMENT = ("This plugin does not support", "OpenType support missing for")
SECONDS = float(os.environ.get("MONKEY_SECONDS", "30"))
SEED = int(os.environ.get("MONKEY_SEED", "0"))
LEFT_OUT_ACTIONS = ("Quit", "Stop and save")  # menu actions that would end the run or the app
TARGETS = (QAbstractButton, QComboBox, QAbstractSpinBox, QLineEdit, QAbstractItemView, QTabBar, QAbstractSlider)
TEXT_TARGETS = (QPlainTextEdit, QTextEdit, QGraphicsView)  # their viewports take the clicks
K = Qt.Key
KEYS = (K.Key_Return, K.Key_Escape, K.Key_Tab, K.Key_Up, K.Key_Down, K.Key_Left, K.Key_Right, K.Key_Space)
KEYS += (K.Key_Delete, K.Key_Backspace, K.Key_PageUp, K.Key_PageDown, K.Key_Home, K.Key_End, K.Key_A, K.Key_7)


@pytest.fixture()
def rng() -> random.Random:
    print(f"MONKEY_SEED={SEED} MONKEY_SECONDS={SECONDS:g}")
    return random.Random(SEED)


@pytest.fixture()
def crash_log(monkeypatch):
    """What the app's crash logger would write (uncaught exceptions of any thread, Qt's warnings), as a list."""
    logged: list[str] = []
    monkeypatch.setattr(app_log, "write_log", logged.append)  # log_exception writes through it too
    monkeypatch.setattr(app_module, "write_log", logged.append)
    monkeypatch.setattr(threading, "excepthook", lambda a: app_log.log_exception(a.exc_value, "thread"))
    previous = qInstallMessageHandler(app_module._log_qt_message)
    yield logged
    qInstallMessageHandler(previous)


class UrlSink(QObject):
    """Takes the URLs the app (or Qt, for a link in the user guide) would hand to the desktop."""

    def __init__(self):
        super().__init__()
        self.urls: list[str] = []

    @Slot(QUrl)
    def open(self, url: QUrl) -> None:
        self.urls.append(url.toString())


@pytest.fixture()
def nothing_blocks(monkeypatch, tmp_path, rng, text_data, completion_data):
    """No dialog that runs its own event loop, no file manager, no browser: seeded answers instead."""
    picked = tmp_path / "picked"
    picked.mkdir()
    files, folders = ("", str(completion_data), str(tmp_path / "saved.yaml")), ("", str(picked), str(text_data))
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (rng.choice(files), ""))
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(tmp_path / "saved.yaml"), ""))
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: rng.choice(folders))
    monkeypatch.setattr(
        QInputDialog, "getText", lambda *a, **k: (rng.choice(("renamed", "", "a/b")), rng.random() < 0.5)
    )
    monkeypatch.setattr(QInputDialog, "getMultiLineText", lambda *a, **k: ("monkey notes\n", rng.random() < 0.5))
    yes_no = (QMessageBox.StandardButton.Yes, QMessageBox.StandardButton.No)
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: rng.choice(yes_no))
    monkeypatch.setattr(QMessageBox, "about", lambda *a, **k: None)
    monkeypatch.setattr(QDialog, "exec", lambda self: self.show() or 0)  # Download…: shown, and monkeyed too
    monkeypatch.setattr(QDesktopServices, "openUrl", lambda url: rng.random() < 0.5)  # False: the app's fallback box
    monkeypatch.setattr(model_panel, "demo_model_dir", lambda: tmp_path / "demo")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "share"))  # the trash
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    sink = UrlSink()
    for scheme in ("http", "https", "file", "mailto"):
        QDesktopServices.setUrlHandler(scheme, sink, "open")
    yield sink
    for scheme in ("http", "https", "file", "mailto"):
        QDesktopServices.unsetUrlHandler(scheme)


def visible_windows(main: QWidget) -> list[QWidget]:
    return [t for t in QApplication.topLevelWidgets() if t.isVisible() and t is not main and not isinstance(t, QMenu)]


def targets(root: QWidget, left_out: set) -> list[QWidget]:
    found = [w for w in root.findChildren(QWidget) if isinstance(w, TARGETS + TEXT_TARGETS)]
    return [w for w in found if w.isVisible() and w.isEnabled() and w not in left_out]


def menu_actions(main) -> list:
    menus = [a.menu() for a in main.menuBar().actions() if a.menu()]
    return [
        a
        for m in menus
        for a in m.actions()
        if not a.isSeparator() and a.isEnabled() and a.text().replace("&", "") not in LEFT_OUT_ACTIONS
    ]


def random_point(rng, w: QWidget) -> QPoint:
    return QPoint(rng.randrange(max(w.width(), 1)), rng.randrange(max(w.height(), 1)))


def wheel(w: QWidget, point: QPoint, up: bool) -> None:
    delta = QPoint(0, 120 if up else -120)
    event = QWheelEvent(
        QPointF(point),
        QPointF(w.mapToGlobal(point)),
        QPoint(),
        delta,
        Qt.MouseButton.NoButton,
        Qt.KeyboardModifier.NoModifier,
        Qt.ScrollPhase.NoScrollPhase,
        False,
    )
    QApplication.sendEvent(w, event)


def act_on(qtbot, rng, w: QWidget) -> str:
    """One random click, key or wheel turn on w; returns what it did."""
    target = w.viewport() if isinstance(w, (QAbstractItemView, *TEXT_TARGETS)) else w
    if isinstance(w, QTabBar) and w.count():
        index = rng.randrange(w.count())
        qtbot.mouseClick(w, Qt.MouseButton.LeftButton, pos=w.tabRect(index).center())
        return f"tab {index}"
    roll = rng.random()
    if roll < 0.4:
        point = w.rect().center() if isinstance(w, QAbstractButton) else random_point(rng, target)
        click = qtbot.mouseDClick if rng.random() < 0.1 else qtbot.mouseClick
        click(target, Qt.MouseButton.LeftButton, pos=point)
        return f"{click.__name__} {point.x()},{point.y()}"
    if roll < 0.55 and isinstance(w, (QAbstractSpinBox, QComboBox, QAbstractItemView, QGraphicsView, QAbstractSlider)):
        up = rng.random() < 0.5
        wheel(target, random_point(rng, target), up)
        return f"wheel {'up' if up else 'down'}"
    if roll < 0.7 and isinstance(w, (QLineEdit, QAbstractSpinBox, QPlainTextEdit)):
        text = rng.choice(("0", "-1", "3", "1e-3", "9999", "abc", "x y", "", "/nonexistent"))
        if rng.random() < 0.5:
            qtbot.keyClick(w, K.Key_A, Qt.KeyboardModifier.ControlModifier)
            qtbot.keyClick(w, K.Key_Delete)
        qtbot.keyClicks(w, text)
        return f"typed {text!r}"
    if roll < 0.75:
        qtbot.keyClick(w, K.Key_A, Qt.KeyboardModifier.ControlModifier)
        return "ctrl+a"
    key = rng.choice(KEYS)
    qtbot.keyClick(w, key)
    return f"key {key.name}"


def monkey_step(qtbot, rng, main, left_out: set) -> str:
    popup = QApplication.activePopupWidget()
    if popup is not None:  # an open combo box list: pick from it or close it
        key = rng.choice((K.Key_Down, K.Key_Up, K.Key_Return, K.Key_Escape))
        qtbot.keyClick(popup.focusWidget() or popup, key)
        return f"popup {type(popup).__name__}: {key.name}"
    others = visible_windows(main)
    roll = rng.random()
    if roll < 0.1:
        root = main.tabs.tabBar()
    elif roll < 0.13:
        actions = menu_actions(main)
        action = rng.choice(actions)
        action.trigger()
        return f"menu {action.text()!r}"
    elif others and roll < 0.4:
        root = rng.choice(others)
        if rng.random() < 0.1:
            root.close()
            return f"closed {type(root).__name__}"
    else:
        root = main.tabs.currentWidget()
    candidates = [root] if isinstance(root, QTabBar) else targets(root, left_out)
    if not candidates:
        return f"nothing to act on in {type(root).__name__}"
    w = rng.choice(candidates)
    name = w.text() if isinstance(w, QAbstractButton) else w.objectName()
    return f"{type(root).__name__} > {type(w).__name__} {name!r}: {act_on(qtbot, rng, w)}"


def check_run_folder(run: RunFolder, last_step: int) -> None:
    """Every file of the run reads back whole; each step is in the metrics, and the run's end is the last line."""
    import mlx.core as mx

    assert yaml.safe_load(run.config.read_text())["adapter_path"] == str(run.path)
    events = [json.loads(line) for line in run.metrics.read_text().splitlines()]
    assert events[-1]["event"] == "finished" and events[-1]["step"] == last_step
    assert [e["step"] for e in events if e["event"] == "step"] == list(range(1, last_step + 1))
    assert mx.load(str(run.adapters)) and json.loads(run.adapter_config.read_text())
    assert not run.notes.exists() or run.notes.read_text() == "monkey notes\n"  # Notes… may write them mid-run
    checkpoints = sorted(run.checkpoints.iterdir())
    assert checkpoints and checkpoints[-1] == run.checkpoint(last_step)
    for folder in checkpoints:
        assert {p.name for p in folder.iterdir()} >= {ADAPTER_FILE, OPTIMIZER_FILE, ADAPTER_CONFIG, STATE_FILE}
        assert mx.load(str(folder / ADAPTER_FILE)) and mx.load(str(folder / OPTIMIZER_FILE))
        assert json.loads((folder / STATE_FILE).read_text())["step"] == int(folder.name)


def test_random_clicks_and_keys_while_training_lose_nothing(
    qtbot,
    rng,
    crash_log,
    nothing_blocks,  # before the window, which finds the demo model's folder when it is built
    window,  # noqa: F811 (the imported fixture)
    text_data,
):
    window.open_dataset(text_data)
    wait_checked(qtbot, window)
    cfg = window.settings_panel.config()
    cfg.iters, cfg.steps_per_eval, cfg.save_every, cfg.keep_last = 1_000_000, 5, 4, 2  # stopped by the test
    window.settings_panel.set_config(cfg)
    qtbot.mouseClick(window.training.start_button, Qt.MouseButton.LeftButton)
    worker = window.worker
    assert worker is not None
    training = window.training
    left_out = {training.stop_button}
    actions, t0 = 0, time.monotonic()
    while time.monotonic() - t0 < SECONDS:
        actions += 1
        print(f"{time.monotonic() - t0:7.2f}s #{actions} {monkey_step(qtbot, rng, window, left_out)}")
        qtbot.wait(rng.choice((0, 1, 5, 20, 50)))
        assert window.worker is worker, f"the run ended during the monkey: {training.status.text()}"
    print(f"{actions} actions in {time.monotonic() - t0:.1f} s; the run is at step {training.progress.value()}")

    for w in visible_windows(window):  # dialogs, message boxes and popups the monkey left open
        w.close()
    if training.pause_button.isChecked():
        qtbot.mouseClick(training.pause_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: worker.trainer is not None and not worker.trainer.paused, timeout=LONG)
    window.tabs.setCurrentWidget(training)
    qtbot.mouseClick(training.stop_button, Qt.MouseButton.LeftButton)
    finished = wait_event(qtbot, worker, Finished)
    assert finished.stopped and finished.step > 0
    qtbot.waitUntil(lambda: window.worker is None, timeout=LONG)
    window.playground.shutdown()
    qtbot.waitUntil(lambda: not running_threads(), timeout=LONG)  # evaluations, fuses, data checks end too
    check_run_folder(RunFolder(finished.run_dir), finished.step)
    logged = [entry for entry in crash_log if not any(noise in entry for noise in ENVIRONMENT)]
    assert logged == [], "the crash log has entries:\n" + "\n".join(logged)
