"""The app with a vision-language model, offscreen: the Data tab's thumbnails and picture tokens, and the
Playground answering about a dropped picture, base and adapter side by side."""

from __future__ import annotations

import pytest

pytest.importorskip("mlx_vlm")

from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl  # noqa: E402
from PySide6.QtGui import QDropEvent  # noqa: E402
from vision_models import QUESTION, square_png  # noqa: E402

from qlora_gui.ui.views.dataset_panel import DatasetPanel  # noqa: E402
from qlora_gui.ui.views.playground_view import PlaygroundView  # noqa: E402

LONG = 60_000


def test_the_data_tab_shows_each_rows_picture_and_its_tokens_as_one_block(qtbot, vision_models, squares):
    panel = DatasetPanel()
    qtbot.addWidget(panel)
    panel.pending.update(model=str(vision_models["gemma3"]))
    with qtbot.waitSignal(panel.token_box.shown, timeout=LONG):
        panel.set_path(squares, mask_prompt=True)
    assert panel.report is not None and panel.report.format == "vision" and panel.usable
    table = panel.preview
    columns = [table.horizontalHeaderItem(c).text() for c in range(table.columnCount())]
    assert columns == ["line", "images", "user", "assistant"]
    assert all(not table.item(r, 1).icon().isNull() for r in range(table.rowCount()))  # a thumbnail per row
    view = panel.token_view.text.view
    pictures = [p for p in view.pieces if p.tokens > 1]
    assert len(pictures) == 1 and pictures[0].tokens == 4 and not pictures[0].trained
    assert "1 picture(s): 4 tokens" in panel.token_view.summary.text() and panel.token_view.picture_legend.isVisibleTo(
        panel
    )
    assert "picture · 4 tokens" in panel.token_view.text.toPlainText()
    assert "red" in "".join(p.text for p in view.pieces if p.trained)


def drop(widget, path) -> None:
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    event = QDropEvent(QPointF(QPoint(5, 5)), Qt.DropAction.CopyAction, mime, Qt.MouseButton.NoButton, Qt.NoModifier)
    widget.dropEvent(event)


def test_the_playground_answers_about_a_dropped_picture_base_and_adapter_side_by_side(qtbot, vision_runs, tmp_path):
    run = vision_runs["qwen2_vl"][0]
    view = PlaygroundView(run.parent)
    qtbot.addWidget(view)
    view.select_run(str(run))
    qtbot.waitUntil(lambda: bool(view.loaded_label), timeout=LONG)
    assert view.vision and view.image.isVisibleTo(view) and not view.conversation.isEnabled()
    for colour in ("red", "blue"):
        drop(view.image, square_png(tmp_path / f"{colour}.png", colour, seed=42))
        assert view.image.path.endswith(f"{colour}.png") and view.image.clear_button.isEnabled()
        view.prompt.setPlainText(QUESTION)
        view.temperature.setValue(0.0)
        view.max_tokens.setValue(4)
        with qtbot.waitSignal(view.generation_done, timeout=LONG):
            view.generate_button.click()
        assert view.panes["adapter"].contents() == colour
        assert view.panes["base"].contents() != colour  # the random base says something else
    view.shutdown()


def test_a_vision_run_trains_from_the_window(qtbot, vision_models, squares, tmp_path):
    from PySide6.QtCore import QSettings

    from qlora_gui.core.events import Finished, RunStarted
    from qlora_gui.ui.main_window import MainWindow

    w = MainWindow(settings=QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat), runs_root=tmp_path / "runs")
    qtbot.addWidget(w)
    w.show()
    assert w.model.select_path(str(vision_models["gemma3"]))
    cfg = w.settings_panel.config()
    cfg.iters, cfg.num_layers, cfg.batch_size, cfg.learning_rate, cfg.sample_answers = 3, 2, 4, 1e-3, 0
    w.settings_panel.set_config(cfg)
    w.open_dataset(squares)
    qtbot.waitUntil(lambda: w.dataset.report is not None and not w.dataset.checking and w.dataset.usable, timeout=LONG)
    events = []
    w.start_training()
    assert w.worker is not None
    w.worker.event.connect(events.append)
    qtbot.waitUntil(lambda: any(isinstance(e, Finished) for e in events), timeout=LONG)
    started = next(e for e in events if isinstance(e, RunStarted))
    assert "Gemma 3 language model" in started.loss_path
    assert next(e for e in events if isinstance(e, Finished)).step == 3
    qtbot.waitUntil(lambda: w.worker is None, timeout=LONG)  # the window lets its finished worker go
    w.playground.shutdown()
