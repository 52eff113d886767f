"""The Runs tab reads a thousand runs from small summaries cached in each run folder: used while the run's files
are unchanged, made again when one changes, and showing what reading the files in full shows."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from qlora_gui.core.runs import run_summary
from qlora_gui.core.runs.run_folder import RunFolder
from qlora_gui.core.runs.run_summary import list_runs, summarize_run

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from bench_runs import make_runs  # noqa: E402  (the benchmark's realistic run folders)


@pytest.fixture()
def runs_root(tmp_path) -> Path:
    make_runs(tmp_path / "runs", 12, 40)
    return tmp_path / "runs"


def test_a_fresh_summary_is_used_and_a_changed_metrics_file_makes_it_again(runs_root, monkeypatch):
    run = RunFolder(sorted(runs_root.iterdir())[0])
    first = summarize_run(run.path)
    assert first is not None and run.summary.is_file()

    def no_reading(_run):
        raise AssertionError("the run's files were read again although none changed")

    monkeypatch.setattr(run_summary, "_summarize_files", no_reading)
    assert summarize_run(run.path) == first  # from summary.json alone
    monkeypatch.undo()

    step = first.last_step + 1
    with run.metrics.open("a") as f:  # the run trains on: one more report
        f.write(json.dumps({"event": "step", "step": step, "loss": 0.125}) + "\n")
    again = summarize_run(run.path)
    assert again is not None and again.last_step == step and again.final_loss == 0.125
    assert json.loads(run.summary.read_text())["summary"]["last_step"] == step

    text = run.metrics.read_text().replace('"loss": 0.125', '"loss": 0.375')  # same size, rewritten later
    run.metrics.write_text(text)
    stat = run.metrics.stat()
    os.utime(run.metrics, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert summarize_run(run.path).final_loss == 0.375


def test_the_table_shows_what_reading_every_file_in_full_shows(qtbot, runs_root):
    from PySide6.QtCore import Qt

    from qlora_gui.ui.views.run_rows import COLUMN_INDEX, COLUMNS, run_row
    from qlora_gui.ui.views.runs_view import RunsView

    RunFolder(next(runs_root.iterdir())).summary.write_text('{"version": 1, "sources": {}')  # cut short: remade
    list_runs(runs_root)  # every folder gets its summary
    full = {r.name: [text for text, _ in run_row(r)] for r in list_runs(runs_root, use_cache=False)}
    view = RunsView(runs_root)
    qtbot.addWidget(view)
    view.show()
    shown = {}
    for i in range(view.run_count()):
        item = view.table.topLevelItem(i)
        shown[item.text(0)] = [item.text(c) for c in range(len(COLUMNS))]
    assert shown == full
    steps = COLUMN_INDEX["Steps"]
    view.table.sortItems(steps, Qt.SortOrder.AscendingOrder)
    column = [int(view.table.topLevelItem(i).text(steps)) for i in range(view.run_count())]
    assert column == sorted(column)  # as numbers: 99 before 100
    evaluated = [r for r in list_runs(runs_root) if r.has_row_losses]
    assert evaluated and all(r.last_evaluation and "row_losses" not in r.last_evaluation for r in evaluated)
    view.select_runs([evaluated[0].name])
    assert view.rows_button.isEnabled()


def test_curves_read_from_the_lines_equal_those_parsed_in_full(runs_root):
    from qlora_gui.core.events import SampleAnswers, StepReport
    from qlora_gui.core.runs.history import RunReadings, read_curves, read_sample_answers

    run = RunFolder(sorted(runs_root.iterdir())[1])
    with run.metrics.open("a") as f:
        f.write(SampleAnswers(3, [{"prompt": "p", "answer": "a"}], 0.5).to_json_line())
        f.write(StepReport(998, 9.0, float("nan"), 1e-4, 1.0, 1.0, 1, 1.0, 0.0, 0.1, 0.2, 0.0, 0.3).to_json_line())
        f.write(json.dumps({"step": 999, "event": "step", "loss": 0.5}) + "\n")  # another shape: parsed in full
        f.write(StepReport(1000, 9.0, 0.25, 1e-4, 1.0, 1.0, 1, 1.0, 0.0, 0.1, 0.2, 0.0, 0.3).to_json_line())
        f.write('{"event": "step", "step": 1001, "loss"')  # cut short by a crash
    readings = RunReadings()
    assert readings.curves(run.path) == read_curves(run.path) and readings.curves(run.path).steps[-1] == 1000
    assert readings.sample_answers(run.path) == read_sample_answers(run.path) != []
    summary = summarize_run(run.path)
    assert summary is not None and summary.last_step == 1000 and summary.final_loss == 0.25


def test_metrics_read_back_as_events_an_unknown_kind_skipped_with_a_warning(tmp_path, caplog):
    from qlora_gui.core.events import StepReport, ValidationResult
    from qlora_gui.core.runs.history import read_curves, read_events

    run = RunFolder(tmp_path / "run")
    run.path.mkdir()
    lines = [
        StepReport(1, 0.1, 2.5, 1e-4, 1.0, 1.0, 10, 1.0, 0.0, 0.1, 0.2, 0.0, 0.3).to_json_line(),
        json.dumps({"event": "from_a_newer_version", "step": 2, "loss": 9.0}) + "\n",
        json.dumps({"event": "validation", "step": 2, "val_loss": 2.0}) + "\n",  # an older version's fields
    ]
    run.metrics.write_text("".join(lines))
    with caplog.at_level("WARNING"):
        events = read_events(run.path)
    assert [type(e) for e in events] == [StepReport, ValidationResult]
    assert events[1].split == "valid" and events[1].val_tokens == 0  # a default, or a value that says nothing
    assert "from_a_newer_version" in caplog.text
    assert read_curves(run.path).val_losses == [2.0]
    assert "step      1 | epoch  0.10 | loss 2.5000" in events[0].describe()
