"""The Playground tab, Evaluate and Fuse & export through the real widgets and workers, offscreen."""

from __future__ import annotations

import json

import pytest
from conftest import fixture_texts, tiny_config, write_jsonl
from test_gui import LONG, no_dangling_threads, store, window  # noqa: F401  (fixtures)

from qlora_gui.core.inference.adapters import default_adapter, load_with_adapter
from qlora_gui.core.inference.generation import SamplingSettings, format_prompt, generate_side_by_side
from qlora_gui.core.train.trainer import Trainer


@pytest.fixture()
def trained_window(qtbot, window, tmp_path, demo_model):  # noqa: F811 (the imported fixture)
    """The window with one finished run (constant SQL answers) in its runs folder."""
    rows = [{"prompt": t, "completion": "select name from table"} for t in fixture_texts(40, seed=5)]
    data = write_jsonl(tmp_path / "pc.jsonl", rows)
    cfg = tiny_config(
        demo_model,
        data,
        window.runs_root / "run-a",
        learning_rate=3e-3,
        iters=40,
        steps_per_report=10,
        steps_per_eval=20,
        mask_prompt=True,
        lora_parameters={"rank": 8, "scale": 10.0, "dropout": 0.0},
    )
    Trainer(cfg).run()
    window.runs.refresh()
    return window


def open_playground(qtbot, w):
    w.tabs.setCurrentWidget(w.playground)
    qtbot.waitUntil(lambda: bool(w.playground.loaded_label), timeout=LONG)
    return w.playground


def test_a_prompt_streams_into_both_panes(qtbot, trained_window):
    p = open_playground(qtbot, trained_window)
    assert p.loaded_label.startswith("run-a @ step 40") and p.template.isChecked()
    p.prompt.setPlainText("what is the city")
    p.temperature.setValue(0.0)
    p.max_tokens.setValue(12)
    p.raw_toggle.setChecked(True)
    with qtbot.waitSignal(p.generation_done, timeout=LONG):
        p.generate_button.click()
    base, adapter = p.panes["base"].contents(), p.panes["adapter"].contents()
    assert base and adapter and base != adapter
    assert "tokens/s" in p.panes["adapter"].stats.text()
    assert p.raw_prompt.toPlainText() == "<s><|user|>\nwhat is the city</s>\n<|assistant|>\n"
    # the same texts as the core gives for the same checkpoint, prompt and settings
    loaded = load_with_adapter(None, default_adapter(trained_window.runs_root / "run-a"))
    expected = generate_side_by_side(
        loaded.model,
        loaded.tokenizer,
        format_prompt(loaded.tokenizer, "what is the city"),
        SamplingSettings(0.0, 0.95, 12, 0),
        lambda u: None,
    )
    assert (base, adapter) == (expected["base"], expected["adapter"])
    # A conversation: each side answers the next prompt after its own first answer
    p.conversation.setChecked(True)
    p.prompt.setPlainText("what is the city")
    with qtbot.waitSignal(p.generation_done, timeout=LONG):
        p.generate_button.click()
    first = {side: p.turns[side][1]["content"] for side in ("base", "adapter")}
    assert first == {"base": base, "adapter": adapter} and p.prompt.toPlainText() == ""
    p.prompt.setPlainText("and the year")
    assert p.panes["adapter"].contents().startswith("You: what is the city")  # typing keeps the conversation
    with qtbot.waitSignal(p.generation_done, timeout=LONG):
        p.generate_button.click()
    history = [{"role": "user", "content": "what is the city"}, {"role": "assistant", "content": adapter}]
    assert p.raw_prompt.toPlainText() == format_prompt(loaded.tokenizer, "and the year", history=history)
    second = generate_side_by_side(
        loaded.model,
        loaded.tokenizer,
        {
            side: format_prompt(loaded.tokenizer, "and the year", history=[history[0], {**history[1], "content": text}])
            for side, text in first.items()
        },
        SamplingSettings(0.0, 0.95, 12, 0),
        lambda u: None,
    )
    assert p.turns["adapter"][3]["content"] == second["adapter"] and p.turns["base"][3]["content"] == second["base"]
    assert p.panes["base"].contents().endswith("Model: " + second["base"])
    p.new_button.click()
    assert p.turns == {"base": [], "adapter": []} and p.panes["adapter"].contents() == ""


def test_stop_ends_a_long_generation(qtbot, trained_window):
    p = open_playground(qtbot, trained_window)
    p.prompt.setPlainText("list the players")
    p.temperature.setValue(1.0)
    p.max_tokens.setValue(8000)
    p.generate_button.click()
    assert p.stop_button.isEnabled()
    qtbot.waitUntil(lambda: len(p.panes["base"].contents()) > 0, timeout=LONG)
    with qtbot.waitSignal(p.generation_done, timeout=LONG):
        p.stop_button.click()
    for side in ("base", "adapter"):
        stats = p.panes[side].stats.text()
        assert "stopped" in stats and int(stats.split()[0]) < 8000
    assert p.generate_button.isEnabled() and not p.stop_button.isEnabled()


def test_sample_from_the_validation_set_shows_the_reference(qtbot, trained_window):
    p = open_playground(qtbot, trained_window)
    p.sample_button.click()
    qtbot.waitUntil(lambda: p.panes["reference"].isVisible(), timeout=LONG)
    assert p.prompt.toPlainText().strip()
    assert p.panes["reference"].contents() == "select name from table"
    assert p.panes["reference"].stats.text().startswith("pc.jsonl:")
    assert "random weights" in p.status.text()  # the demo base answers with noise, and the tab says so
    p.temperature.setValue(0.0)
    p.max_tokens.setValue(6)
    with qtbot.waitSignal(p.generation_done, timeout=LONG):
        p.generate_button.click()
    assert p.panes["adapter"].contents()
    p.sample_button.click()  # a new prompt: the answers to the old one go
    qtbot.waitUntil(lambda: p.panes["base"].contents() == "", timeout=LONG)
    assert p.panes["adapter"].contents() == "" and not p.panes["base"].stats.text()
    qtbot.waitUntil(lambda: p.panes["reference"].contents() == "select name from table", timeout=LONG)
    with qtbot.waitSignal(p.generation_done, timeout=LONG):
        p.generate_button.click()
    p.prompt.setPlainText("which city")  # typing a prompt clears them too, and the sampled row's reference
    assert p.panes["base"].contents() == p.panes["adapter"].contents() == "" and p.panes["reference"].isHidden()


def test_evaluate_shows_and_saves_base_and_adapter_losses(qtbot, trained_window):
    runs = trained_window.runs
    runs.select_runs(["run-a"])
    assert not runs.rows_button.isEnabled()  # nothing measured per row yet
    with qtbot.waitSignal(runs.evaluated, timeout=LONG):
        runs.eval_button.click()
    saved = json.loads((trained_window.runs_root / "run-a" / "evaluation.json").read_text())["results"]
    assert saved[0]["split"] == "valid" and saved[0]["adapter_loss"] < saved[0]["base_loss"]
    assert "base loss" in runs.summary.text() and "adapter loss" in runs.summary.text()
    from qlora_gui.ui.views.runs_view import COLUMN_INDEX

    assert "→" in runs.table.topLevelItem(0).text(COLUMN_INDEX["Eval: answer loss (base → adapter)"])
    assert runs.rows_button.isEnabled()
    runs.rows_button.click()  # each row's own loss, the hardest first
    table = runs.hard_rows.highest
    losses = [float(table.item(r, 3).text()) for r in range(table.rowCount())]
    assert table.rowCount() == saved[0]["rows"] and losses == sorted(losses, reverse=True)
    assert table.item(0, 5).text() and int(table.item(0, 0).text()) > 0
    runs.hard_rows.close()


def test_fuse_and_export_writes_a_model_folder_then_a_gguf_for_ollama(qtbot, trained_window, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no ollama here: the dialog says the command to run
    trained_window.export_run(str(trained_window.runs_root / "run-a"))
    dialog = trained_window.export_dialog
    dialog.open_when_done = False
    assert dialog.format.currentData() == "mlx" and dialog.mlx_weights.findData("dequantize") == -1  # not quantized
    assert dialog.gguf_type.isHidden() and "About" in dialog.estimate.text()
    # The parent folder is cut in the middle, never at the left; the whole path is its tooltip.
    dialog.parent_label.resize(120, 20)
    parent = dialog.parent_label.toolTip()  # the full path; the label itself may be elided
    shown = dialog.parent_label.text()
    assert parent == str(trained_window.runs_root.parent / "exports") == dialog.parent_label.toolTip()
    assert "…" in shown and shown[0] == parent[0] and shown[-1] == parent[-1]
    dialog.export_button.click()
    qtbot.waitUntil(lambda: dialog.job is None, timeout=LONG)  # done or failed
    assert dialog.result_path is not None, dialog.status.text()
    out = dialog.result_path
    assert (out / "config.json").is_file() and out.name.endswith("-fused")
    assert out.parent == trained_window.runs_root.parent / "exports" and "step40" in out.name
    assert dialog.bar.value() == 1000 and "Saved" in dialog.status.text()

    dialog.format.setCurrentIndex(dialog.format.findData("gguf"))
    assert not dialog.gguf_type.isHidden() and "Q4_0 — about" in dialog.gguf_type.itemText(3)
    dialog.gguf_type.setCurrentIndex(dialog.gguf_type.findData("q4_0"))
    assert dialog.name.text().endswith("-gguf")
    dialog.name.setText("../up")  # never outside by accident
    dialog.export_button.click()
    assert dialog.job is None and "without .." in dialog.status.text()
    dialog.name.setText(out.name)  # the first export's folder is not empty: refused, said
    dialog.export_button.click()
    assert dialog.job is None and "already exists" in dialog.status.text()
    (tmp_path / "made-before").mkdir()  # an empty folder made beforehand is accepted
    dialog.name.setText(str(tmp_path / "made-before"))
    assert dialog.target() == tmp_path / "made-before"
    dialog.name.setText("not/yet/there")  # folders that do not exist yet are created
    dialog.ollama.setChecked(True)
    dialog.export_button.click()
    qtbot.waitUntil(lambda: dialog.job is None, timeout=LONG)
    out = dialog.result_path
    assert out == trained_window.runs_root.parent / "exports" / "not" / "yet" / "there", dialog.status.text()
    assert (out / f"{out.name}-Q4_0.gguf").is_file() and (out / "Modelfile").is_file(), dialog.status.text()
    assert "ollama create" in dialog.status.text() and "Modelfile" in dialog.status.text()
    dialog.close()


def test_training_start_unloads_the_playground_model_and_the_tab_reloads_it(qtbot, trained_window, tmp_path):
    w = trained_window
    p = open_playground(qtbot, w)
    rows = [{"text": t} for t in fixture_texts(24, seed=11)]
    w.open_dataset(write_jsonl(tmp_path / "more.jsonl", rows))
    qtbot.waitUntil(lambda: w.dataset.report is not None and not w.dataset.checking, timeout=LONG)
    cfg = w.settings_panel.config()
    cfg.iters = 2
    w.settings_panel.set_config(cfg)
    w.start_training()
    assert not p.loaded_label  # unloading was asked before the trainer loaded its model
    qtbot.waitUntil(lambda: "unloaded" in p.status.text(), timeout=LONG)
    qtbot.waitUntil(lambda: w.worker is None, timeout=LONG)
    w.tabs.setCurrentWidget(w.playground)
    qtbot.waitUntil(lambda: bool(p.loaded_label), timeout=LONG)


def test_a_folder_that_cannot_be_opened_is_said_with_its_path(qtbot, monkeypatch, tmp_path):
    from PySide6.QtGui import QDesktopServices, QGuiApplication
    from PySide6.QtWidgets import QMessageBox, QWidget

    from qlora_gui.ui.desktop import open_folder

    monkeypatch.setattr(QDesktopServices, "openUrl", staticmethod(lambda url: False))  # no file manager
    parent = QWidget()
    qtbot.addWidget(parent)
    assert open_folder(tmp_path, parent) is False
    box = parent.findChild(QMessageBox, "open-folder-failed")
    assert box is not None and str(tmp_path) in box.text()
    copy = next(b for b in box.buttons() if b.text() == "Copy path")
    copy.click()
    assert QGuiApplication.clipboard().text() == str(tmp_path)
    monkeypatch.setattr(QDesktopServices, "openUrl", staticmethod(lambda url: True))
    assert open_folder(tmp_path / "gone", parent) is False  # a folder that was moved away is named as such
    assert any("no longer exists" in b.text() for b in parent.findChildren(QMessageBox))
