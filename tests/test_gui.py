"""The app through its real widgets and the real training worker, offscreen, on the tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from conftest import tiny_config, write_jsonl
from PySide6.QtCore import QMimeData, QPointF, QSettings, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent, QGuiApplication

from qlora_gui.core.events import Failed, Finished, RunStarted, StepReport
from qlora_gui.core.runs.checkpoints import latest_checkpoint
from qlora_gui.ui.main_window import MainWindow
from qlora_gui.ui.views.runs_view import COLUMN_INDEX
from qlora_gui.ui.workers import jobs

LONG = 120_000  # ms; generous for a loaded 2-core CI machine, never reached when things work


@pytest.fixture(autouse=True)
def no_dangling_threads(qtbot):
    yield
    # A worker or job still running after a test is a bug: wait briefly, then fail.
    qtbot.waitUntil(lambda: not jobs.running_threads(), timeout=30_000)


@pytest.fixture()
def store(tmp_path):
    return QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)


@pytest.fixture()
def window(qtbot, store, tmp_path, demo_model):
    w = MainWindow(settings=store, runs_root=tmp_path / "runs")
    qtbot.addWidget(w)
    w.show()
    assert w.model.select_path(str(demo_model))
    cfg = w.settings_panel.config()
    cfg.num_layers, cfg.batch_size, cfg.learning_rate = 2, 4, 2e-3
    cfg.steps_per_report, cfg.steps_per_eval, cfg.save_every, cfg.val_batches = 1, 3, 3, -1
    cfg.lora_parameters = {"rank": 4, "scale": 10.0, "dropout": 0.0}
    w.settings_panel.set_config(cfg)
    yield w
    if w.worker is not None:
        w.worker.stop()
        w.worker.wait()
    w.playground.shutdown()


def wait_event(qtbot, worker, kind: type):
    """The next event of this type the worker delivers."""
    with qtbot.waitSignal(worker.event, timeout=LONG, check_params_cb=lambda e: isinstance(e, kind)) as blocker:
        pass
    return blocker.args[0]


def on_event(worker, kind: type, receiver) -> None:
    """Call receiver(event) for each event of this type the worker delivers."""
    worker.event.connect(lambda e: isinstance(e, kind) and receiver(e))


def wait_checked(qtbot, w):
    qtbot.waitUntil(lambda: w.dataset.report is not None and not w.dataset.checking, timeout=LONG)


def set_iters(w, iters: int) -> None:
    cfg = w.settings_panel.config()
    cfg.iters = iters
    w.settings_panel.set_config(cfg)


def drop(w, path: Path) -> None:
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    enter = QDragEnterEvent(
        QPointF(50, 50).toPoint(),
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    w.dragEnterEvent(enter)
    assert enter.isAccepted()
    w.dropEvent(
        QDropEvent(
            QPointF(50, 50), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
        )
    )


def test_dropping_a_file_sets_the_dataset(qtbot, window, completion_data):
    drop(window, completion_data)
    wait_checked(qtbot, window)
    assert window.dataset.path == str(completion_data)
    assert window.tabs.currentWidget() is window.dataset
    assert "format: <b>completions</b>" in window.dataset.summary.text()
    assert window.dataset.preview.rowCount() == 5 and window.dataset.preview.columnCount() == 3
    assert window.dataset.histogram.getPlotItem().listDataItems()  # the length histogram is drawn
    assert window.training.start_button.isEnabled()


def test_a_bad_file_shows_its_lines_and_keeps_start_disabled(qtbot, window, tmp_path):
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"text": f"row {i}"} for i in range(6)], ['{"text": 7}'])
    window.open_dataset(bad)
    wait_checked(qtbot, window)
    items = [window.dataset.problems.item(i).text() for i in range(window.dataset.problems.count())]
    assert items == [f"{bad}:7: 'text' must be a string, got a number"]
    assert not window.training.start_button.isEnabled()
    assert "problems" in window.training.reason.text()
    window.dataset.problems.setCurrentRow(0)  # clicking shows that line of the file
    assert '     7 | {"text": 7}' in window.dataset.line_view.toPlainText()


def test_a_short_run_draws_charts_and_lists_checkpoints(qtbot, window, text_data, monkeypatch):
    from PySide6.QtCore import QEvent, QObject

    from qlora_gui.ui.workers.event_worker import EventWorker

    window.open_dataset(text_data)
    wait_checked(qtbot, window)
    set_iters(window, 6)
    # 48 rows / batch 4 = 12 steps per epoch: the plan says what a 6-step budget means
    assert window.training.reason.text() == (
        "48 training rows · 12 steps per epoch · 6 steps = 0.50 epochs (the step budget decides)"
    )
    order = []  # the Train tab's charts are painted before the trainer starts to compete for the interpreter

    class Paints(QObject):
        def eventFilter(self, obj, event):  # noqa: N802 (Qt's name)
            if event.type() == QEvent.Type.Paint:
                order.append("paint")
            return False

    paints = Paints()
    window.training.charts.view.viewport().installEventFilter(paints)
    start = EventWorker.start
    monkeypatch.setattr(EventWorker, "start", lambda self, *a: (order.append("start"), start(self, *a))[1])
    qtbot.mouseClick(window.training.start_button, Qt.MouseButton.LeftButton)
    worker = window.worker
    assert worker is not None and not window.training.start_button.isEnabled()
    assert order[:2] == ["paint", "start"]
    assert window.training.charts.loss_plot.viewRange()[0][1] >= 6  # the planned steps, before RunStarted
    progress = []
    on_event(worker, StepReport, progress.append)
    finished = wait_event(qtbot, worker, Finished)
    assert finished.step == 6 and not finished.stopped
    assert [p.step for p in progress] == [1, 2, 3, 4, 5, 6]
    charts = window.training.charts
    charts.redraw()
    xs, ys = charts.loss_raw.getData()
    assert list(xs) == [1, 2, 3, 4, 5, 6] and len(charts.val_steps) >= 2
    # Sane axes: steps from 0 to the last step, no SI scaling; legends beside the data, not on it;
    # a memory limit far above a small run's use is named in the title instead of squashing the lines.
    low, high = charts.loss_plot.viewRange()[0]
    assert -1 < low <= 0 and 6 <= high < 7 and not charts.loss_plot.getAxis("bottom").autoSIPrefix
    assert charts.loss_plot.legend is None and len(charts.loss_legend.items) == 3
    assert not charts.limit_line.isVisible() and "above" in charts.memory_title()
    assert window.training.checkpoint_count() >= 2
    # Sample answers: the base's at step 0, then at each validation and the end; scrub back to the base.
    timeline = window.training.samples
    assert timeline.steps == [0, 3, 6] and len(timeline.panels) == 2
    assert timeline.step_label.text().startswith("step 6 · 3 of 3")
    timeline.slider.setValue(0)
    assert timeline.panels[0].answer_title.text() == "Answer at step 0 (the base, before training)"
    assert timeline.panels[0].reference.toPlainText()  # text rows: the part after the cut is the reference
    qtbot.waitUntil(lambda: window.worker is None, timeout=LONG)
    assert window.training.start_button.isEnabled()
    assert window.runs.run_count() == 1
    window.runs.select_runs([window.runs.table.topLevelItem(0).text(0)])
    assert window.runs.samples.steps == [0, 3, 6]  # the Runs tab shows them for earlier runs


def test_stop_saves_and_resume_continues_from_that_step(qtbot, window, text_data, monkeypatch):
    import threading

    from qlora_gui.ui.workers import training_worker

    reads_on_gui_thread = []  # the resumed run's history is parsed by the worker, never by the window
    read = training_worker.read_events
    monkeypatch.setattr(
        training_worker,
        "read_events",
        lambda run_dir: (
            reads_on_gui_thread.append(threading.current_thread() is threading.main_thread()),
            read(run_dir),
        )[1],
    )
    window.open_dataset(text_data)
    wait_checked(qtbot, window)
    set_iters(window, 500)
    window.start_training()
    worker = window.worker
    on_event(
        worker,
        StepReport,
        lambda e: e.step == 2 and qtbot.mouseClick(window.training.stop_button, Qt.MouseButton.LeftButton),
    )
    finished = wait_event(qtbot, worker, Finished)
    stopped_at = finished.step
    assert finished.stopped and 2 <= stopped_at < 500
    qtbot.waitUntil(lambda: window.worker is None, timeout=LONG)
    # The bar and the status name the same step; checkpoints list by step number.
    assert window.training.progress.value() == stopped_at
    assert window.training.status.text().startswith(f"Stopped at step {stopped_at} ")
    listed = [
        window.training.checkpoints.topLevelItem(i).data(0, Qt.ItemDataRole.DisplayRole)
        for i in range(window.training.checkpoints.topLevelItemCount())
    ]
    assert listed == sorted(listed) and all(isinstance(x, int) for x in listed)
    run_dir = Path(finished.run_dir)
    assert latest_checkpoint(run_dir).step == stopped_at

    tree = window.training.checkpoints
    item = next(
        tree.topLevelItem(i) for i in range(tree.topLevelItemCount()) if tree.topLevelItem(i).text(0) == str(stopped_at)
    )
    item.setSelected(True)
    assert window.training.resume_button.isEnabled()
    qtbot.mouseClick(window.training.resume_button, Qt.MouseButton.LeftButton)
    worker = window.worker
    steps = []
    on_event(worker, StepReport, lambda e: (steps.append(e.step), len(steps) == 2 and worker.stop()))
    started = wait_event(qtbot, worker, RunStarted)
    assert started.start_step == stopped_at and started.run_dir == str(run_dir)
    assert "stopped at step" not in window.training.log.toPlainText()  # a fresh log for the new run
    assert reads_on_gui_thread == [False]
    wait_event(qtbot, worker, Finished)
    assert steps[0] == stopped_at + 1


def test_closing_mid_run_asks_stops_and_leaves_no_thread(qtbot, window, text_data, monkeypatch):
    window.open_dataset(text_data)
    wait_checked(qtbot, window)
    set_iters(window, 500)
    window.start_training()
    worker = window.worker
    wait_event(qtbot, worker, StepReport)
    asked = []
    monkeypatch.setattr(window, "confirm", lambda title, text: asked.append(title) or True)
    window.close()
    assert asked == ["Training is running"]
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=LONG)
    assert window.worker is None and not worker.isRunning()
    assert jobs.running_threads() == []
    run_dir = Path(worker.config.adapter_path)
    assert latest_checkpoint(run_dir) is not None  # the stop saved


def test_a_worker_failure_shows_a_dialog_and_the_app_stays_up(qtbot, window, text_data, tmp_path):
    broken = tmp_path / "broken-model"
    broken.mkdir()
    for f in Path(window.model.selected_path).iterdir():
        (broken / f.name).write_bytes(f.read_bytes())
    window.model.select_path(str(broken))
    (broken / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")  # no weights
    window.open_dataset(text_data)
    wait_checked(qtbot, window)
    set_iters(window, 3)
    window.start_training()
    failed = wait_event(qtbot, window.worker, Failed)
    qtbot.waitUntil(lambda: window.worker is None, timeout=LONG)
    assert window.error_dialog is not None and window.error_dialog.isVisible()
    assert window.error_dialog.text() == failed.message
    assert window.isVisible() and window.training.start_button.isEnabled()
    window.error_dialog.close()


def test_settings_validate_save_load_and_copy_the_cli_command(qtbot, window, text_data, tmp_path):
    window.open_dataset(text_data)
    wait_checked(qtbot, window)
    lr = window.settings_panel.widget("learning_rate")
    lr.setText("fast")
    assert "is not a number" in window.settings_panel.error.text()
    assert not window.training.start_button.isEnabled()
    lr.setText("3e-4")
    assert window.settings_panel.error.text() == "" and window.training.start_button.isEnabled()
    text = window.settings_panel.copy_command()
    assert QGuiApplication.clipboard().text() == text
    assert text.startswith("qlora-gui train --model ") and "--learning-rate 0.0003" in text
    window.settings_panel.presets.setCurrentIndex(3)
    window.settings_panel.apply_preset(3)  # Thorough
    cfg = window.settings_panel.config()
    assert cfg.epochs == 3 and cfg.num_layers == -1 and cfg.lora_parameters["rank"] == 16
    presets = window.settings_panel.presets  # the menu says which preset is in use, and what each is for
    assert presets.itemText(0) == "Preset: Thorough" and presets.itemText(3).startswith("✓ Thorough — Three epochs")
    assert "Three epochs" in presets.itemData(3, Qt.ItemDataRole.ToolTipRole)
    window.settings_panel.widget("lora_parameters.rank").setValue(32)
    assert presets.itemText(0) == "Presets…" and presets.itemText(3).startswith("Thorough — ")
    for key, tip_word in (("batch_size", "memory"), ("lora_parameters.rank", "memory"), ("steps_per_eval", "time")):
        assert tip_word in window.settings_panel.widget(key).toolTip()


def test_over_the_memory_estimate_start_asks_first(qtbot, window, text_data, monkeypatch):
    window.open_dataset(text_data)
    wait_checked(qtbot, window)
    window.budget = 1024  # pretend the machine has 1 KB
    window._refresh()
    assert "Over the limit" in window.settings_panel.estimate_label.text()
    asked = []
    monkeypatch.setattr(window, "confirm", lambda title, text: asked.append(title) or False)
    window.start_training()
    assert asked == ["Memory"] and window.worker is None


def test_the_app_remembers_data_model_and_settings(qtbot, store, tmp_path, demo_model, text_data):
    first = MainWindow(settings=store, runs_root=tmp_path / "runs")
    qtbot.addWidget(first)
    first.model.select_path(str(demo_model))
    first.open_dataset(text_data)
    wait_checked(qtbot, first)
    cfg = first.settings_panel.config()
    cfg.lora_parameters = {"rank": 12, "scale": 3.0, "dropout": 0.0}
    first.settings_panel.set_config(cfg)
    first.close()
    second = MainWindow(settings=store, runs_root=tmp_path / "runs")
    qtbot.addWidget(second)
    wait_checked(qtbot, second)
    assert second.dataset.path == str(text_data)
    assert second.model.selected_path == str(demo_model)
    assert second.settings_panel.config().lora_parameters["rank"] == 12


def test_runs_overlay_their_curves(qtbot, window, text_data):
    window.open_dataset(text_data)
    wait_checked(qtbot, window)
    set_iters(window, 2)
    for _ in range(2):
        window.start_training()
        wait_event(qtbot, window.worker, Finished)
        qtbot.waitUntil(lambda: window.worker is None, timeout=LONG)
    runs = window.runs
    runs.refresh()
    assert runs.run_count() == 2
    names = [runs.table.topLevelItem(i).text(0) for i in range(2)]
    runs.select_runs(names)
    assert sorted(runs.plotted) == sorted(names)
    assert len(runs.plot.lines()) == 4  # train line and validation dots for each


def test_download_offline_fails_at_once_with_a_message(qtbot, monkeypatch):
    from qlora_gui.ui.dialogs.download_dialog import DownloadDialog

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    dialog = DownloadDialog()
    qtbot.addWidget(dialog)
    dialog.repo.setText("mlx-community/some-model")
    dialog.start()
    qtbot.waitUntil(lambda: "offline mode is on" in dialog.status.text(), timeout=10_000)
    assert dialog.download.isEnabled()


def test_the_demo_model_entry_builds_a_model(qtbot, window, monkeypatch, tmp_path):
    from qlora_gui.ui.views import model_panel
    from qlora_gui.ui.views.model_panel import PATH_ROLE

    monkeypatch.setattr(model_panel, "demo_model_dir", lambda: tmp_path / "demo")
    window.model.models.setCurrentItem(window.model.rows()[0])
    assert window.model.busy and "Building" in window.model.info.text()
    qtbot.waitUntil(lambda: not window.model.busy, timeout=LONG)
    assert window.model.selected_path == str(tmp_path / "demo")
    assert json.loads((tmp_path / "demo" / "config.json").read_text())["model_type"] == "llama"
    demo = window.model.rows()[0]
    assert demo.text(3) == "float32" and demo.text(2).endswith(("K", "M")) and "demo" in demo.text(5)
    headers = [window.model.models.headerItem().text(c) for c in range(window.model.models.columnCount())]
    assert headers == ["Model", "Architecture", "Parameters", "Weights", "Size", "Found in"]
    assert "GB" in window.model.quantize.itemData(
        1, Qt.ItemDataRole.ToolTipRole
    ) or "MB" in window.model.quantize.itemData(1, Qt.ItemDataRole.ToolTipRole)
    # after a relaunch the remembered demo folder is the demo row, not a second one
    window.model.rescan()
    qtbot.waitUntil(
        lambda: len(window.model.rows()) >= 1 and window.model.models.currentItem() is not None, timeout=LONG
    )
    assert window.model.select_path(str(tmp_path / "demo"))
    assert sum(1 for r in window.model.rows() if r.text(0) == "Demo model (tiny, random weights)") == 1
    assert window.model.models.currentItem().data(0, PATH_ROLE) == "demo"


def test_command_line_opens_the_app_preloaded(qtbot, monkeypatch, demo_model, completion_data, tmp_path):
    from qlora_gui.ui import app as app_module

    shown = {}

    def fake_exec(self=None):
        win = app_module.QApplication.instance().topLevelWidgets()
        shown["windows"] = [w for w in win if isinstance(w, MainWindow) and w.isVisible()]
        return 0

    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(tmp_path))
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    monkeypatch.setattr(type(app_module.QApplication.instance()), "exec", fake_exec)
    from qlora_gui.entry import main

    assert main([str(completion_data), "--model", str(demo_model)]) == 0
    [w] = shown["windows"]
    qtbot.addWidget(w)
    assert w.dataset.path == str(completion_data) and w.model.selected_path == str(demo_model)
    wait_checked(qtbot, w)
    w.close()


def test_closing_right_after_a_run_ends_does_not_ask(qtbot, window, text_data, monkeypatch):
    window.open_dataset(text_data)
    wait_checked(qtbot, window)
    set_iters(window, 2)
    window.start_training()
    monkeypatch.setattr(window, "confirm", lambda *a: pytest.fail("asked although the run had ended"))
    wait_event(qtbot, window.worker, Finished)
    window.close()  # the worker thread may still be returning
    assert not window.isVisible() and window.worker is None


def test_pause_holds_the_trainer_and_resume_lets_it_finish(qtbot, window, text_data):
    window.open_dataset(text_data)
    wait_checked(qtbot, window)
    set_iters(window, 4)
    window.start_training()
    worker = window.worker
    seen = []

    def on_progress(e):
        seen.append(e.step)
        if e.step == 1:
            qtbot.mouseClick(window.training.pause_button, Qt.MouseButton.LeftButton)

    on_event(worker, StepReport, on_progress)
    qtbot.waitUntil(lambda: worker.trainer is not None and worker.trainer.paused, timeout=LONG)
    assert window.training.pause_button.text() == "Resume"
    assert window.training.status.text().startswith("Paused at step ") and "ETA" not in window.training.status.text()
    qtbot.mouseClick(window.training.pause_button, Qt.MouseButton.LeftButton)
    assert not worker.trainer.paused
    wait_event(qtbot, worker, Finished)
    assert seen == [1, 2, 3, 4]


def test_gradient_checkpointing_from_the_settings_tab_trains_and_gives_the_memory_limit_back(qtbot, window, text_data):
    import mlx.core as mx

    from qlora_gui.core.train.memory_ceiling import ceiling_by_default

    window.open_dataset(text_data)
    wait_checked(qtbot, window)
    set_iters(window, 3)
    box = window.settings_panel.widget("grad_checkpoint")
    assert "a third more time" in box.toolTip()
    box.setChecked(True)
    assert window.settings_panel.config().grad_checkpoint
    before = mx.get_memory_limit()
    window.start_training()
    worker = window.worker
    done = wait_event(qtbot, worker, Finished)
    assert not done.stopped and done.step == 3
    assert "gradient checkpointing on 2 layers" in window.training.log.toPlainText()
    loop = worker.trainer.loop
    assert (loop.ceiling is not None and loop.ceiling.measurements >= 1) == ceiling_by_default()
    assert mx.get_memory_limit() == before


def test_a_file_opened_from_the_dock_lands_in_the_data_tab(qtbot, window, completion_data):
    """macOS sends files dropped on the Dock icon or opened with "Open With" as QFileOpenEvent."""
    import types

    from PySide6.QtGui import QFileOpenEvent

    from qlora_gui.ui.app import StudioApplication

    app = types.SimpleNamespace(window=None, pending=[])  # before the window exists the path waits
    assert StudioApplication.event(app, QFileOpenEvent(str(completion_data)))
    assert app.pending == [str(completion_data)]
    app.window = window
    assert StudioApplication.event(app, QFileOpenEvent(str(completion_data)))
    wait_checked(qtbot, window)
    assert window.dataset.path == str(completion_data) and window.tabs.currentWidget() is window.dataset


def test_the_token_view_shows_a_row_as_the_model_sees_it(qtbot, window, completion_data):
    from PySide6.QtCore import QEvent
    from PySide6.QtGui import QMouseEvent, QTextCursor
    from PySide6.QtWidgets import QApplication

    window.dataset.mask_prompt.setChecked(True)
    window.open_dataset(completion_data)
    wait_checked(qtbot, window)
    panel, view = window.dataset, window.dataset.token_view
    line = int(panel.preview.item(2, 0).text())
    panel.preview.setCurrentCell(2, 1)
    qtbot.waitUntil(lambda: view.text.view is not None and view.text.view.line == line, timeout=LONG)
    shown = view.text.view
    assert view.summary.text().startswith(f"{completion_data}:{line} (")
    assert f"{shown.trained} trained" in view.summary.text() and 0 < shown.trained < shown.kept
    row = json.loads(completion_data.read_text().splitlines()[line - 1])
    assert row["prompt"] in view.text.toPlainText() and row["completion"] in view.text.toPlainText()
    # A trained token has a highlight, a masked one none; hovering a token outlines it and names it.
    first_trained = next(i for i, p in enumerate(shown.pieces) if p.trained and i > 0)
    cursor = QTextCursor(view.text.document())
    for i, expect_background in ((first_trained, True), (1, False)):
        cursor.setPosition(view.text.starts[i] + 1)
        assert (cursor.charFormat().background().style() != Qt.BrushStyle.NoBrush) == expect_background
    cursor.setPosition(view.text.starts[first_trained])
    view.text.setTextCursor(cursor)
    view.text.ensureCursorVisible()
    point = QPointF(view.text.cursorRect(cursor).center()) + QPointF(2, 0)
    move = QMouseEvent(
        QEvent.Type.MouseMove,
        point,
        view.text.viewport().mapToGlobal(point),
        Qt.MouseButton.NoButton,
        Qt.MouseButton.NoButton,
        Qt.KeyboardModifier.NoModifier,
    )
    QApplication.sendEvent(view.text.viewport(), move)
    assert view.text.hovered == first_trained
    assert view.text.extraSelections() and "trained" in view.text.describe(first_trained)
    # A shorter max_seq_length marks where the row is cut.
    window.pending.update(max_seq_length=8)  # as the Settings tab sets it
    wait_checked(qtbot, window)
    qtbot.waitUntil(lambda: view.text.view is not None and view.text.view.truncated, timeout=LONG)
    assert "✂ cut at max_seq_length=8" in view.text.toPlainText() and "cut at max_seq_length=8" in view.summary.text()


def test_a_fresh_start_trains_the_demo_model_with_every_preset(qtbot, tmp_path, monkeypatch):
    """The path the app suggests to a newcomer: fresh settings, the demo model, the sample data, a preset."""
    from qlora_gui.core.resources import sample_data_path
    from qlora_gui.ui.views.model_panel import PATH_ROLE

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "share"))
    w = MainWindow(
        settings=QSettings(str(tmp_path / "fresh.ini"), QSettings.Format.IniFormat), runs_root=tmp_path / "runs"
    )
    qtbot.addWidget(w)
    w.show()
    qtbot.waitUntil(lambda: any(item.data(0, PATH_ROLE) == "demo" for item in w.model.rows()), timeout=LONG)
    demo = next(item for item in w.model.rows() if item.data(0, PATH_ROLE) == "demo")
    w.model.models.setCurrentItem(demo)
    qtbot.waitUntil(lambda: w.model.selected is not None and not w.model.busy, timeout=LONG)
    w.open_dataset(sample_data_path())
    wait_checked(qtbot, w)
    presets = w.settings_panel.presets
    for index in range(1, presets.count()):
        name = presets.itemText(index)
        w.settings_panel.apply_preset(index)
        qtbot.waitUntil(lambda: w.training.start_button.isEnabled(), timeout=LONG)
        w.training.start_button.click()
        done = wait_event(qtbot, w.worker, Finished)
        assert not done.stopped and done.step > 0, name
        qtbot.waitUntil(lambda: w.worker is None, timeout=LONG)
        assert "adapters on all 2 layers" in w.training.log.toPlainText() or w.settings_panel.config().num_layers in (
            -1,
            2,
        ), name


# The spin boxes hold only values the trainer takes (tests/test_settings_schema.py); typed text can be refused.
@pytest.mark.parametrize(
    "key, value, named",
    [
        ("learning_rate", "0", "Learning rate: must be above 0, got 0"),
        ("learning_rate", "-1e-4", "Learning rate: must be above 0, got -0.0001"),
        ("learning_rate", "fast", "Learning rate: 'fast' is not a number"),
    ],
)
def test_a_setting_the_trainer_refuses_disables_start_and_is_named(qtbot, window, text_data, key, value, named):
    window.open_dataset(text_data)
    wait_checked(qtbot, window)
    assert window.training.start_button.isEnabled()
    widget = window.settings_panel.widget(key)
    widget.setText(value) if isinstance(value, str) else widget.setValue(value)
    assert not window.training.start_button.isEnabled()
    assert window.training.reason.text() == f"Settings: {window.settings_panel.problem} (Settings tab)."
    assert window.settings_panel.problem.startswith(named) and "'" + key not in window.settings_panel.problem
    assert "#e5534b" in widget.styleSheet()
    assert window.settings_panel.estimate_label.text() == "Memory estimate: fix the setting above first."


def test_the_data_path_box_takes_typing_and_text_rows_turn_completions_only_off(qtbot, window, text_data, tmp_path):
    panel = window.dataset
    panel.mask_prompt.setChecked(True)
    panel.path_edit.setText(str(text_data))
    panel.path_edit.editingFinished.emit()  # Enter, or leaving the box
    assert panel.checking and panel.busy.isVisibleTo(panel)  # the check runs off the GUI thread, shown moving
    qtbot.waitUntil(
        lambda: panel.report is not None and not panel.checking and panel.report.format == "text", timeout=LONG
    )
    assert panel.path == str(text_data) and panel.usable and not panel.busy.isVisibleTo(panel)
    assert not panel.mask_prompt.isChecked() and not panel.mask_prompt.isEnabled()
    assert "was turned off: plain text rows have no prompt to mask" in panel.summary.text()
    assert "Ready to train." in panel.summary.text()
    window.pending.update(model="")  # as the Model tab says while no model is picked
    qtbot.waitUntil(lambda: panel.report is not None and not panel.checking, timeout=LONG)
    assert "Ready to train." not in panel.summary.text() and "pick a model" in panel.summary.text()
    assert panel.report.splits["train"].unit == "characters"
    assert "characters" in panel.histogram.getPlotItem().titleLabel.text


def test_help_opens_the_user_guide_and_lists_the_real_shortcuts(qtbot, window):
    from qlora_gui.ui.dialogs.help_dialogs import ShortcutsDialog, UserGuideDialog

    guide = UserGuideDialog(window)
    qtbot.addWidget(guide)
    titles = [guide.index.item(i).text() for i in range(guide.index.count())]
    assert "Two commands" in titles and "Speed and memory" in titles
    guide.index.setCurrentRow(titles.index("A short tour"))
    assert "Data" in guide.page.toPlainText() and guide.page.document().resource(2, "docs/data.png") is not None
    shortcuts = ShortcutsDialog(window)
    qtbot.addWidget(shortcuts)
    rows = {
        shortcuts.table.item(r, 1).text(): shortcuts.table.item(r, 0).text() for r in range(shortcuts.table.rowCount())
    }
    assert rows["Start training"] == "Ctrl+R" and rows["Generate (Playground)"] == "Ctrl+Return"
    assert "User guide" in rows


def _fake_run(root, name, lr, iters, val_losses):
    run = root / name
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(
        f"model: m\ndata: d.jsonl\nadapter_path: {run}\nlearning_rate: {lr}\n"
        f"iters: {iters}\nbatch_size: 4\nlora_parameters: {{rank: 8}}\n"
    )
    events = [{"event": "step", "step": 10 * (i + 1), "loss": 3.0 - i} for i in range(len(val_losses))]
    events += [
        {"event": "validation", "split": "valid", "step": 10 * (i + 1), "val_loss": v} for i, v in enumerate(val_losses)
    ]
    (run / "metrics.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    return run


def test_runs_can_be_renamed_annotated_compared_and_trashed(qtbot, window, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "share"))  # the trash, inside the test's folder
    runs = window.runs
    a = _fake_run(window.runs_root, "20260101-a", 1e-3, 40, [2.5, 2.0, 2.2])
    _fake_run(window.runs_root, "20260101-b", 3e-3, 80, [2.4])
    runs.refresh()
    row = {runs.table.topLevelItem(i).text(0): runs.table.topLevelItem(i) for i in range(runs.run_count())}
    col = COLUMN_INDEX
    headline = runs.table.headerItem().text(col["Final val loss"])
    assert headline == "Final val loss" and row["20260101-a"].text(col["Final val loss"]) == "2.2000"
    assert row["20260101-a"].text(col["Best val loss"]) == "2.0000" and row["20260101-a"].text(col["Mode"]) == "SFT"
    assert "40 steps" in row["20260101-a"].text(col["Settings"]) and "80 steps" in row["20260101-b"].text(
        col["Settings"]
    )
    runs.select_runs(["20260101-a", "20260101-b"])  # two: the actions need one, the summary says what differs
    assert not runs.try_button.isEnabled() and not runs.eval_button.isEnabled() and not runs.delete_button.isEnabled()
    lines = dict(line.split(": ", 1) for line in runs.summary.text().splitlines()[1:])
    assert set(lines) == {"learning_rate", "iters"} and set(lines["iters"].split(" | ")) == {"40", "80"}
    assert "adapter_path" not in runs.summary.text()
    runs.select_runs(["20260101-a"])
    assert runs.try_button.toolTip() == "Acts on 20260101-a"
    runs.busy_run = str(a)  # training writes to it: it may be tried and annotated, not changed
    runs.update_actions()
    assert runs.try_button.isEnabled() and runs.notes_button.isEnabled()
    assert not any(
        b.isEnabled() for b in (runs.eval_button, runs.export_button, runs.rename_button, runs.delete_button)
    )
    runs.rename_selected("elsewhere")
    assert a.is_dir()
    runs.busy_run = None
    runs.update_actions()
    runs.rename_selected("lr 1e-3 baseline")
    renamed = window.runs_root / "lr 1e-3 baseline"
    assert renamed.is_dir() and not a.exists() and runs.selected_run() == str(renamed)
    assert yaml.safe_load((renamed / "config.yaml").read_text())["adapter_path"] == str(renamed)  # resume finds it
    runs.rename_selected("20260101-b")  # taken: refused, said, nothing moved
    assert "already exists" in runs.summary.text() and renamed.is_dir()
    runs.set_notes("best so far\nsecond line")
    item = runs.table.selectedItems()[0]
    assert item.text(col["Notes"]) == "best so far second line" and "Notes: best so far" in runs.summary.text()
    assert (renamed / "notes.md").read_text() == "best so far\nsecond line"
    assert runs.trash_selected() and not renamed.exists() and runs.run_count() == 1
    assert any((tmp_path / "share" / "Trash" / "files").iterdir())


def test_a_cut_off_run_is_offered_on_launch_and_resumes_to_its_end(qtbot, store, tmp_path, demo_model, text_data):
    from PySide6.QtWidgets import QApplication

    from qlora_gui.core.train.trainer import Trainer

    runs = tmp_path / "runs"
    cfg = tiny_config(demo_model, text_data, runs / "cut", iters=6, save_every=3)
    holder = {}
    trainer = Trainer(cfg, lambda e: isinstance(e, StepReport) and e.step == 3 and holder["t"].stop())
    holder["t"] = trainer
    trainer.run()
    metrics = runs / "cut" / "metrics.jsonl"  # as a crash leaves it: no finished event at the end
    metrics.write_text(
        "".join(line + "\n" for line in metrics.read_text().splitlines() if json.loads(line)["event"] != "finished")
    )

    first = MainWindow(settings=store, runs_root=runs)
    qtbot.addWidget(first)
    first.show()
    qtbot.waitUntil(lambda: first.resume_offer is not None, timeout=LONG)
    assert "“cut” stopped at step 3" in first.resume_offer.text()
    next(b for b in first.resume_offer.buttons() if b.text() == "Dismiss").click()
    first.close()
    second = MainWindow(settings=store, runs_root=runs)  # dismissed: not offered again, still in the Runs tab
    qtbot.addWidget(second)
    second.show()
    QApplication.processEvents()
    assert second.resume_offer is None
    second.runs.select_runs(["cut"])
    assert second.runs.resume_button.isEnabled() and second.runs.resume_button.text() == "Resume from step 3"
    second.runs.resume_button.click()
    assert second.worker is not None
    done = wait_event(qtbot, second.worker, Finished)
    assert done.step == 6 and not done.stopped
    qtbot.waitUntil(lambda: second.worker is None, timeout=LONG)
    second.runs.refresh()
    second.runs.select_runs(["cut"])
    assert not second.runs.resume_button.isEnabled()  # finished: nothing to resume


def test_a_damaged_model_is_named_in_the_model_tab_and_start_waits(
    qtbot, window, tmp_path, demo_model, completion_data
):
    import shutil

    window.open_dataset(completion_data)
    wait_checked(qtbot, window)
    assert window.training.start_button.isEnabled()
    folder = tmp_path / "damaged"
    shutil.copytree(demo_model, folder)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # an interrupted copy
    assert window.model.select_path(str(folder))
    assert "is cut short" in window.model.info.text() and window.model.problem
    wait_checked(qtbot, window)
    assert not window.training.start_button.isEnabled()
    assert window.training.reason.text() == "The model folder has a problem: see the Model tab."
    assert window.model.select_path(str(demo_model)) and not window.model.problem
    wait_checked(qtbot, window)
    assert window.training.start_button.isEnabled()


def test_an_error_no_code_caught_is_said_in_one_line_with_the_log(qtbot, window, tmp_path):
    from PySide6.QtWidgets import QMessageBox

    from qlora_gui.ui.app import _report_error

    _report_error(window, ValueError("bad thing"), tmp_path / "qlora-studio.log")
    box = window.findChild(QMessageBox, "unexpected-error")
    assert box is not None and "Unexpected ValueError: bad thing" in box.text()
    assert str(tmp_path / "qlora-studio.log") in box.text() and "Traceback" not in box.text()
    assert any(a.text() == "Open log folder" for a in window.findChildren(type(window.start_action)))


def test_preference_pairs_ask_for_dpo_and_train_with_live_pair_charts(qtbot, window, tmp_path):
    from test_preference import pairs

    write_jsonl(tmp_path / "prefs" / "train.jsonl", pairs(24, 5))
    write_jsonl(tmp_path / "prefs" / "valid.jsonl", pairs(8, 6))
    window.open_dataset(tmp_path / "prefs")
    wait_checked(qtbot, window)
    assert "format: <b>preference</b>" in window.dataset.summary.text()
    assert not window.training.start_button.isEnabled()  # SFT on pairs: the reason says what to pick
    assert "pick DPO or ORPO" in window.training.reason.text()
    cfg = window.settings_panel.config()
    cfg.train_mode, cfg.iters = "dpo", 6
    window.settings_panel.set_config(cfg)
    qtbot.waitUntil(lambda: window.training.start_button.isEnabled(), timeout=LONG)
    window.start_training()
    finished = wait_event(qtbot, window.worker, Finished)
    assert finished.step == 6 and not finished.stopped
    charts = window.training.preference
    assert charts.isVisible() and charts.width() > 150 and charts.height() > 120  # with room, not squeezed away
    steps, wins = charts.points[("valid", "reward_accuracy")]
    assert steps == [0, 3, 6] and wins[0] == 0.0  # the base is its own reference: ties at step 0
    assert charts.points[("train", "chosen_logp")][0] == [1, 2, 3, 4, 5, 6]
    assert "pairs: chosen wins" in window.training.log.toPlainText()


def test_the_data_tab_splits_with_the_seed_training_uses(qtbot, window, tmp_path):
    """The held-out rows the Data tab shows (and the token view reads) are the ones the trainer holds out."""
    from qlora_gui.core.data.dataset import check_data, training_data
    from qlora_gui.core.model.model_files import load_tokenizer

    data = write_jsonl(tmp_path / "seeded.jsonl", [{"text": f"row number {i} of the seeded file"} for i in range(40)])
    cfg = window.settings_panel.config()
    cfg.seed = 7
    window.settings_panel.set_config(cfg)
    window.open_dataset(data)
    wait_checked(qtbot, window)
    shown = {name: split.lines for name, split in window.dataset.raw.items()}
    _, _, trained = training_data(
        str(data), load_tokenizer(Path(window.model.selected_path)), cfg.max_seq_length, False, cfg.batch_size,
        window.dataset.valid_share.value(), 7,
    )  # fmt: skip
    assert shown == {name: split.lines for name, split in trained.items()}
    seed_zero = check_data(data, valid_fraction=window.dataset.valid_share.value(), seed=0).raw
    assert shown["valid"] != seed_zero["valid"].lines  # seed 7 holds out other rows than seed 0 would


def test_the_data_tab_shows_how_far_a_check_is(qtbot, window, text_data):
    seen: list[tuple[str, float]] = []
    window.dataset.progress.moved.connect(lambda generation, what, share: seen.append((what, share)))
    window.open_dataset(text_data)
    wait_checked(qtbot, window)
    assert ("encoding train", 1.0) in seen and all(0 <= share <= 1 for _, share in seen)
    assert window.dataset.busy.isHidden() and window.dataset.report.usable
    # A check that a newer one replaced stops at its next report instead of running on unseen.
    from qlora_gui.ui.workers.data_jobs import CheckSuperseded

    with pytest.raises(CheckSuperseded):
        window.dataset.progress.reporter(1, lambda: 2)("encoding train", 0.5)
