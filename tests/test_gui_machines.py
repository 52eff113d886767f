"""The app's Several Macs: two ranks on this machine through the real mlx.launch, offscreen, end to end."""

from __future__ import annotations

import itertools
import time

import pytest
from PySide6.QtCore import QSettings, Qt

from qlora_gui.core.distributed.hostfile import LOCAL, Machines
from qlora_gui.core.events import Finished, StepReport
from qlora_gui.core.runs.checkpoints import latest_checkpoint
from qlora_gui.ui.main_window import MainWindow
from qlora_gui.ui.workers import jobs
from qlora_gui.ui.workers.launch_worker import LaunchWorker

LONG = 120_000  # ms; generous for a loaded 2-core machine, never reached when things work


@pytest.fixture(autouse=True)
def no_dangling_threads(qtbot):
    yield
    qtbot.waitUntil(lambda: not jobs.running_threads(), timeout=30_000)


@pytest.fixture()
def window(qtbot, tmp_path, demo_model, text_data):
    w = MainWindow(settings=QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat), runs_root=tmp_path / "runs")
    qtbot.addWidget(w)
    w.show()
    assert w.model.select_path(str(demo_model))
    w.open_dataset(text_data)
    qtbot.waitUntil(lambda: w.dataset.report is not None and not w.dataset.checking, timeout=LONG)
    cfg = w.settings_panel.config()
    cfg.num_layers, cfg.batch_size, cfg.learning_rate, cfg.iters = 2, 4, 2e-3, 1000
    cfg.steps_per_report, cfg.steps_per_eval, cfg.save_every, cfg.sample_answers = 1, 1000, 1000, 0
    cfg.lora_parameters = {"rank": 4, "scale": 10.0, "dropout": 0.0}
    w.settings_panel.set_config(cfg)
    yield w
    if w.worker is not None:
        w.worker.stop()
        w.worker.wait()
    w.playground.shutdown()


def test_several_macs_train_with_the_same_view_and_controls(qtbot, window):
    window.tabs.setCurrentWidget(window.settings_panel)
    box = window.settings_panel.machines
    box.several.click()
    # The table starts with this Mac and an empty row: Start says what is missing.
    assert box.table.item(0, 0).text() == LOCAL and not window.training.start_button.isEnabled()
    assert 'Machines: host 1 (127.0.0.1) has no "ips"' in window.training.reason.text()
    for row in (0, 1):  # two ranks on this machine, over localhost
        box.table.item(row, 0).setText(LOCAL)
        box.table.item(row, 1).setText(LOCAL)
    assert box.machines() == Machines([box.machines().hosts[0]] * 2, "ring", [], "Machines")
    assert window.training.start_button.isEnabled()
    box.check_button.click()
    qtbot.waitUntil(lambda: box.report is not None, timeout=LONG)
    assert box.result.text().startswith("✓ 2 processes on this machine (ring): every host answers")

    qtbot.mouseClick(window.training.start_button, Qt.MouseButton.LeftButton)
    worker = window.worker
    assert isinstance(worker, LaunchWorker)
    steps: list[int] = []
    arrivals: list[float] = []  # when each report came: a quiet spell is judged against this machine's pace
    worker.event.connect(
        lambda e: isinstance(e, StepReport) and (steps.append(e.step), arrivals.append(time.monotonic()))
    )
    qtbot.waitUntil(lambda: len(steps) >= 3, timeout=LONG)
    view = window.training
    assert view.bottom.isTabVisible(view.bottom.indexOf(view.machines))
    assert [view.machines.topLevelItem(i).text(1) for i in range(3)][2] == "all"
    assert view.machines.topLevelItem(0).text(2) != "–"  # each machine's speed, from the reports

    qtbot.mouseClick(view.pause_button, Qt.MouseButton.LeftButton)  # every rank waits at the same step
    last = {"n": -1, "at": time.monotonic()}
    # Quiet for four of the slowest steps seen: a loaded machine's slow step is not taken for a pause.
    quiet = max(0.8, 4 * max(b - a for a, b in itertools.pairwise(arrivals)))

    def settled() -> bool:
        if len(steps) != last["n"]:
            last.update(n=len(steps), at=time.monotonic())
        return time.monotonic() - last["at"] > quiet

    qtbot.waitUntil(settled, timeout=LONG)
    qtbot.wait(int(quiet * 1000))
    assert len(steps) == last["n"] and steps[-1] < 1000

    finished: list[Finished] = []
    worker.event.connect(lambda e: isinstance(e, Finished) and finished.append(e))
    qtbot.mouseClick(view.stop_button, Qt.MouseButton.LeftButton)  # stop while paused: a checkpoint, then the end
    qtbot.waitUntil(lambda: bool(finished), timeout=LONG)
    qtbot.waitUntil(lambda: window.worker is None, timeout=LONG)
    assert finished[0].stopped and finished[0].step == steps[-1]
    saved = latest_checkpoint(finished[0].run_dir)
    assert saved is not None and saved.step == steps[-1]
    assert view.checkpoint_count() == 1 and "Stopped at step" in view.status.text()
    assert list(view.charts.loss_raw.getData()[0]) == steps  # the same charts as a local run
