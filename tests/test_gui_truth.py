# ruff: noqa: F811 (pytest fixtures imported from test_gui are parameters here)
"""The window tells the truth (issue 32): what a new user met on chat and preference data, widget by widget."""

from __future__ import annotations

import numpy as np
from conftest import fixture_texts, write_jsonl
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication
from test_gui import no_dangling_threads, store, wait_checked, window  # noqa: F401 (fixtures)


def test_the_timeline_keeps_the_history_of_a_prompt_with_a_no_break_space(qtbot):
    from qlora_gui.ui.widgets.sample_timeline import SampleTimeline

    timeline = SampleTimeline()
    qtbot.addWidget(timeline)
    sample = {"prompt": "What is 2\u00a0+\u00a02?", "reference": "4", "answer": "4", "tokens": 1, "source": "v:1"}
    for step in (0, 10, 20):
        timeline.add(step, [sample], 0.1)
    assert timeline.steps == [0, 10, 20] and timeline.step_label.text().startswith("step 20 · 3 of 3")


def test_an_empty_sample_answer_is_said_not_a_blank_cell(qtbot):
    from qlora_gui.ui.widgets.sample_timeline import SampleTimeline

    timeline = SampleTimeline()
    qtbot.addWidget(timeline)
    timeline.add(10, [{"prompt": "p", "reference": "r", "answer": " ", "tokens": 1, "source": "v:1"}], 0.1)
    assert timeline.grid.item(0, 0).text() == "(no text)" and "ended its answer" in timeline.grid.item(0, 0).toolTip()
    assert "ended its answer" in timeline._panels[0].answer.placeholderText()


def chat_rows(n: int, seed: int, answer_words: int = 3) -> list[dict]:
    texts = fixture_texts(n, seed=seed)
    return [
        {
            "messages": [
                {"role": "system", "content": "answer in words"},
                {"role": "user", "content": t},
                {"role": "assistant", "content": " ".join((t.split() * 40)[:answer_words])},
            ]
        }
        for t in texts
    ]


def test_completions_only_is_decided_per_dataset_and_warns_only_on_suspect_masks(qtbot, window, text_data, tmp_path):
    panel = window.dataset
    chat = tmp_path / "chat"
    write_jsonl(chat / "train.jsonl", chat_rows(16, 1, answer_words=60))  # long answers: most tokens trained
    write_jsonl(chat / "valid.jsonl", chat_rows(4, 2))
    window.open_dataset(chat)
    wait_checked(qtbot, window)
    train = panel.report.splits["train"]
    assert panel.mask_prompt.isChecked() and panel.mask_prompt.isEnabled()
    assert 0.6 < train.trained_share < 1.0  # masked, with long answers
    assert not any("completions only is on" in w for w in panel.report.warnings)
    qtbot.waitUntil(lambda: bool(panel.token_view.text.toPlainText()), timeout=60_000)  # a chat row, as tokens
    shown = []  # what the token view holds as the next dataset's check ends: not the chat row
    panel.report_changed.connect(lambda: shown.append(panel.token_view.text.toPlainText()))
    window.open_dataset(text_data)  # plain text: off for this dataset
    qtbot.waitUntil(lambda: panel.report is not None and panel.report.format == "text", timeout=60_000)
    assert shown and not shown[-1]
    assert not panel.mask_prompt.isChecked()
    window.open_dataset(chat)  # a chat folder afterwards does not inherit "off"
    qtbot.waitUntil(lambda: panel.report is not None and panel.report.format == "chat", timeout=60_000)
    assert panel.mask_prompt.isChecked() and panel.report.splits["train"].trained_share < 1.0


def test_the_masking_warning_names_rows_with_no_token_masked():
    from qlora_gui.core.data.encode import EncodedSplit
    from qlora_gui.core.data.encoded_warnings import encoded_warnings

    masked = np.array([False, False, True, True])
    enc = EncodedSplit([np.arange(4)] * 2, [masked, masked], np.array([4, 4]), [1, 2])
    assert encoded_warnings({"train": enc}, mask_prompt=True) == []
    unmasked = EncodedSplit([np.arange(4)] * 2, [masked, np.array([False, True, True, True])], np.array([4, 4]), [1, 2])
    (warning,) = encoded_warnings({"train": unmasked}, mask_prompt=True)
    assert "1 training row(s) have no token masked" in warning
    assert encoded_warnings({"train": unmasked}, mask_prompt=False) == []


def test_a_refused_number_stays_as_typed_marked_with_its_reason_and_start_says_why(qtbot, window, text_data):
    window.open_dataset(text_data)
    wait_checked(qtbot, window)
    assert window.training.start_button.isEnabled()
    window.tabs.setCurrentWidget(window.settings_panel)
    for key, label in (("num_layers", "Layers to adapt"), ("lora_parameters.rank", "Rank"), ("batch_size", "Batch")):
        box = window.settings_panel.widget(key)
        before, width = box.value(), box.width()
        box.lineEdit().selectAll()
        qtbot.keyClicks(box.lineEdit(), "0")
        box.interpretText()  # as leaving the box does
        assert box.text() == "0"  # never "all", never the old value back
        reason = window.settings_panel.reason_label(key)
        assert not reason.isHidden() and "got 0" in reason.text() and "#e5534b" in box.lineEdit().styleSheet()
        assert not window.training.start_button.isEnabled()
        assert (
            window.training.reason.text().startswith(f"Settings: {label}") and "got 0" in window.training.reason.text()
        )
        QApplication.processEvents()  # the form lays out again with the reason shown
        assert not box.styleSheet() and box.width() == width  # the box keeps its arrows and its width
        box.setValue(before)
        assert reason.isHidden() and window.training.start_button.isEnabled()
    layers = window.settings_panel.widget("num_layers")
    layers.setValue(layers.minimum())
    assert layers.text() == "all" and window.settings_panel.config().num_layers == -1


def test_preference_pairs_under_sft_are_not_ready_and_one_click_trains_with_dpo(qtbot, window, tmp_path):
    from test_preference import pairs

    write_jsonl(tmp_path / "prefs" / "train.jsonl", pairs(12, 5))
    write_jsonl(tmp_path / "prefs" / "valid.jsonl", pairs(4, 6))
    window.open_dataset(tmp_path / "prefs")
    wait_checked(qtbot, window)
    panel = window.dataset
    assert not window.training.start_button.isEnabled() and "pick DPO or ORPO" in window.training.reason.text()
    assert "Ready to train." not in panel.summary.text() and "pick DPO or ORPO" in panel.summary.text()
    assert panel.mode_button.isVisibleTo(panel) and panel.mode_button.text() == "Train with DPO"
    qtbot.mouseClick(panel.mode_button, Qt.MouseButton.LeftButton)
    assert window.settings_panel.config().train_mode == "dpo"
    qtbot.waitUntil(lambda: window.training.start_button.isEnabled(), timeout=60_000)
    assert "Ready to train." in panel.summary.text() and not panel.mode_button.isVisibleTo(panel)


def report(step: int, loss: float, **kw):
    from qlora_gui.core.events import StepReport

    return StepReport(step, step / 10, loss, 1e-4, 100.0, 1.0, 10 * step, 1.0, 1.0, 0.1, 0.2, 0.0, 0.3, **kw)


def test_charts_wait_for_data_draw_a_single_report_and_smooth_from_the_data(qtbot):
    from qlora_gui.core.events import PreferenceReport, ValidationResult
    from qlora_gui.ui.widgets.charts import COLORS, TrainingCharts, dots_drawn, ema
    from qlora_gui.ui.widgets.preference_charts import PreferenceCharts

    charts, pairs = TrainingCharts(), PreferenceCharts()
    for widget in (charts, pairs):
        qtbot.addWidget(widget)
        widget.show()
    charts.redraw()
    assert charts.stack.currentWidget() is charts.stack.waiting  # no empty 0-1 axes before data
    assert pairs.stack.currentWidget() is pairs.stack.waiting
    charts.set_total_steps(10)  # a started run: axes over its steps, with no values before the first report
    charts.redraw()
    assert charts.stack.currentWidget() is charts.view and not charts.loss_plot.getAxis("left").style["showValues"]
    charts.add_progress(report(1, 2.0))
    charts.redraw()
    assert all(p.getAxis("left").style["showValues"] for p in (charts.loss_plot, charts.lr_plot, charts.mem_plot))
    assert charts.stack.currentWidget() is charts.view
    for curve in (charts.loss_raw, charts.lr_curve, charts.tps_curve, charts.mem_peak):
        assert dots_drawn(curve) == 1  # one report is a dot, not nothing
    low, high = charts.lr_plot.viewRange()[1]
    assert 0 < low < 1e-4 < high < 2e-4  # around its value: one learning rate is not drawn on a line marked 0
    pairs.add(PreferenceReport(1, 0.5, 0.1, -3.0, -3.5, 4))
    assert dots_drawn(pairs.curves[("train", "reward_accuracy")]) == 1
    assert pairs.stack.currentWidget() is pairs.view
    assert charts.val_points.scatter.opts["brush"].color().name() == COLORS["val"]  # the legend's marker
    charts.add_validation(ValidationResult(1, 1.9, 10, True, 0.1))
    for step, loss in enumerate([0.5, 0.04, 0.04, 0.04], start=2):
        charts.add_progress(report(step, loss))
    charts.redraw()
    assert charts.loss_raw.opts["symbol"] is None  # a line from two reports on
    decay = 0.7  # TensorBoard's debiased smoothing: no pull toward the first report
    acc, expected = 0.0, []
    for n, v in enumerate([2.0, 0.5, 0.04, 0.04, 0.04], start=1):
        acc = decay * acc + (1 - decay) * v
        expected.append(acc / (1 - decay**n))
    assert np.allclose(ema([2.0, 0.5, 0.04, 0.04, 0.04]), expected)
    assert np.allclose(charts.loss_smooth.getData()[1], expected) and expected[0] == 2.0
    charts.set_memory_limit(23.5)
    charts.redraw()
    assert "23.5 GB" in charts.memory_title() and ", above" not in charts.memory_title()


def test_the_status_names_what_a_dpo_run_does_before_its_first_step(qtbot):
    from qlora_gui.core.events import RunStarted, ValidationResult
    from qlora_gui.ui.views.training_view import TrainingView

    view = TrainingView()
    qtbot.addWidget(view)
    config = {"train_mode": "dpo", "sample_answers": 2}
    view.on_started(RunStarted("/tmp/r", config, 10, 100, 5, 10, 0, 20, 4, 0.1))
    assert "DPO reference" in view.status.text() and "validating the base (step 0)" in view.status.text()
    view.on_validation(ValidationResult(0, 0.69, 40, True, 0.2))
    assert view.status.text().startswith("Base validation loss 0.6900 (step 0); answering the sample prompts")


def test_the_runs_tab_draws_a_resumed_run_without_its_abandoned_steps_and_sorts_as_its_arrow_says(qtbot, tmp_path):
    import json

    from qlora_gui.ui.views.runs_view import COLUMN_INDEX, RunsView

    run = tmp_path / "runs" / "resumed"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(f"model: m\ndata: d.jsonl\nadapter_path: {run}\ntrain_mode: dpo\n")
    first = [{"event": "step", "step": s, "loss": 1.0 - s / 10} for s in range(1, 7)]  # killed after step 6
    first.append({"event": "validation", "split": "valid", "step": 5, "val_loss": 0.5})
    again = [{"event": "run_started", "start_step": 4}]  # resumed from the checkpoint of step 4
    again += [{"event": "step", "step": s, "loss": 0.9 - s / 10} for s in range(5, 9)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(e) + "\n" for e in first + again))
    other = tmp_path / "runs" / "other"
    other.mkdir()
    (other / "config.yaml").write_text(f"model: m\ndata: d.jsonl\nadapter_path: {other}\n")
    (other / "metrics.jsonl").write_text(json.dumps({"event": "step", "step": 100, "loss": 2.0}) + "\n")
    view = RunsView(tmp_path / "runs")
    qtbot.addWidget(view)
    view.resize(1280, 760)
    view.show()
    view.select_runs(["resumed"])
    header = view.table.header()  # newest first, and the arrow that says so in sight at 1280 px
    assert header.sortIndicatorSection() == COLUMN_INDEX["Date"]
    for column in ("Date", "Notes"):  # the user's own notes too, not scrolled off to the right
        assert header.sectionViewportPosition(COLUMN_INDEX[column]) + 20 < view.table.viewport().width()
    ((steps, losses),) = view.plot.lines()  # no dots: the validation of the abandoned step 5 went
    assert list(steps) == [1, 2, 3, 4, 5, 6, 7, 8] and losses[4] == 0.4  # one line: the resumed attempt's step 5
    row = view.table.findItems("resumed", Qt.MatchFlag.MatchExactly, 0)[0]
    assert row.text(COLUMN_INDEX["Mode"]) == "DPO" and row.text(COLUMN_INDEX["Last train loss"]).endswith("(DPO)")
    view.table.sortByColumn(COLUMN_INDEX["Steps"], Qt.SortOrder.AscendingOrder)
    assert view.table.header().sortIndicatorOrder() == Qt.SortOrder.AscendingOrder
    assert [view.table.topLevelItem(i).text(0) for i in range(2)] == ["resumed", "other"]  # 8 before 100


def test_a_first_run_card_loads_the_sample_data_and_the_demo_model_in_one_click_each(
    qtbot, store, tmp_path, demo_model, monkeypatch
):
    from qlora_gui.core.resources import sample_data_path
    from qlora_gui.ui.main_window import MainWindow
    from qlora_gui.ui.views import model_panel

    monkeypatch.setattr(model_panel, "demo_model_dir", lambda: demo_model)  # built already: found, not rebuilt
    w = MainWindow(settings=store, runs_root=tmp_path / "runs")
    qtbot.addWidget(w)
    w.show()
    card = w.dataset.first_run
    assert card.isVisible() and w.dataset.sample_button.isVisible() and w.dataset.demo_button.isVisible()
    qtbot.mouseClick(w.dataset.sample_button, Qt.MouseButton.LeftButton)
    assert w.dataset.path == str(sample_data_path()) and not w.dataset.sample_button.isVisible()
    qtbot.mouseClick(w.dataset.demo_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: w.model.selected_path == str(demo_model) and not w.model.busy, timeout=60_000)
    wait_checked(qtbot, w)
    assert not card.isVisible() and w.dataset.mask_prompt.isChecked()
    qtbot.waitUntil(lambda: w.training.start_button.isEnabled(), timeout=60_000)
    w.playground.shutdown()


def test_a_run_resumed_from_an_earlier_checkpoint_drops_the_steps_it_goes_back_over_on_the_train_tab(qtbot):
    from dataclasses import asdict

    from qlora_gui.core.events import PreferenceReport, RunStarted, SampleAnswers, ValidationResult
    from qlora_gui.ui.views.training_view import TrainingView

    view = TrainingView()
    qtbot.addWidget(view)
    config = {"train_mode": "dpo"}
    sample = [{"prompt": "p", "reference": "r", "answer": "a", "tokens": 1, "source": "v:1"}]
    events = [RunStarted("/tmp/r", config, 10, 100, 5, 20, 0, 20, 4, 0.1)]
    for step in range(1, 15):  # stopped at step 14; checkpoints at 5 and 10
        events += [report(step, 1.0), PreferenceReport(step, 0.5, 0.1, -3.0, -3.5, 4)]
        if step % 5 == 0:
            events += [ValidationResult(step, 0.9, 10, True, 0.1), SampleAnswers(step, sample, 0.1)]
    view.on_started(events[0])
    for e in events[1:]:
        {"step": view.on_progress, "preference": view.on_preference, "validation": view.on_validation}.get(
            e.kind, view.on_samples
        )(e)
    charts, pairs = view.charts, view.preference

    def shown_up_to(step: int) -> None:
        assert charts.steps == list(range(1, step + 1)) and charts.val_steps == [s for s in (5, 10) if s <= step]
        assert pairs.points[("train", "reward_accuracy")][0] == list(range(1, step + 1))
        assert view.samples.steps == [s for s in (5, 10) if s <= step]

    # "Resume from here" on step 10 branches into a new folder: the window's line up to 10, no fork after it
    view.on_started(RunStarted("/tmp/r-from-10", config, 10, 100, 5, 20, 10, 20, 4, 0.1), [])
    shown_up_to(10)
    # Resumed in place from step 5 with the folder's history, whose last attempt went on to step 14 and is dropped
    metrics = [{"event": e.kind, **asdict(e)} for e in events]
    view.on_started(RunStarted("/tmp/r", config, 10, 100, 5, 20, 5, 20, 4, 0.1), metrics)
    shown_up_to(5)


def test_a_small_memory_estimate_is_said_in_mb_not_as_zero_gb(qtbot):
    from qlora_gui.core.train.estimate import MemoryEstimate
    from qlora_gui.ui.views.settings_panel import SettingsPanel

    panel = SettingsPanel()
    qtbot.addWidget(panel)
    panel.show_memory_estimate(MemoryEstimate(3 * 2**20, 2**20, 8 * 2**20), 24 * 2**30)
    assert panel.estimate_label.text().startswith("Memory estimate: 12 MB of 24 GB available (weights 3 MB")
    panel.show_memory_estimate(MemoryEstimate(3 * 2**20, 2**20, 8 * 2**20), 24 * 2**30, measured_gb=0.58)
    assert panel.estimate_label.text().startswith("Memory: 0.58 GB peak measured") and "said 12 MB" in (
        panel.estimate_label.text()
    )


def test_sample_answers_give_the_charts_their_room_back_when_another_tab_is_opened(qtbot):
    from qlora_gui.ui.views.training_view import TrainingView

    view = TrainingView()
    qtbot.addWidget(view)
    view.resize(1280, 680)
    view.show()
    qtbot.waitExposed(view)
    before = view.split.sizes()
    view.bottom.setCurrentWidget(view.samples)
    assert view.split.sizes()[1] > before[1]  # room to read the answers
    view.bottom.setCurrentWidget(view.log)
    assert view.split.sizes() == before  # and the charts get theirs back
