"""Adapters trained elsewhere: a folder as mlx_lm.lora (or mlx-lm-lora) writes it opens in the Runs tab ("Add a run
folder…"), the Playground, Evaluate and Export, with its base taken from its config; the original is untouched."""

from __future__ import annotations

import json
import os
from pathlib import Path

import mlx.core as mx
import pytest
from conftest import fixture_texts, write_jsonl
from test_gui import LONG, no_dangling_threads, store, window  # noqa: F401  (fixtures)
from test_mlx_lm_config import mlx_lm_config_defaults

from qlora_gui.core.errors import UserError
from qlora_gui.core.runs.run_import import add_run_folder
from qlora_gui.core.runs.run_summary import list_runs


@pytest.fixture()
def mlx_lm_folder(tmp_path, demo_model) -> Path:
    """`mlx_lm.lora --train --model M --data D --num-layers 1 --iters 2 --save-every 1`'s adapter folder, in its
    exact layout: adapter_config.json is its whole config (lora.py saves vars(args): CONFIG_DEFAULTS with the
    run's values, paths as given on its command line, relative to where it ran), adapters.safetensors the
    trainable weights of mlx-lm's own LoRA layers (tuner/trainer.py), and NNNNNNN_adapters.safetensors each save."""
    from mlx.utils import tree_flatten, tree_map
    from mlx_lm import load
    from mlx_lm.tuner.utils import linear_to_lora_layers

    where = tmp_path / "elsewhere"  # the folder mlx_lm.lora ran in
    rows = [{"prompt": t, "completion": " ".join(reversed(t.split()))} for t in fixture_texts(24, seed=7)]
    write_jsonl(where / "data" / "train.jsonl", rows[:16])
    write_jsonl(where / "data" / "valid.jsonl", rows[16:])
    config = {**mlx_lm_config_defaults(), "model": os.path.relpath(demo_model, where), "data": "data",
              "adapter_path": "adapters", "train": True, "iters": 2, "num_layers": 1, "save_every": 1,
              "val_batches": 1}  # fmt: skip
    model, _ = load(str(demo_model))
    model.freeze()
    linear_to_lora_layers(model, config["num_layers"], config["lora_parameters"])
    folder = where / "adapters"
    folder.mkdir()
    mx.random.seed(3)
    for step in (1, 2):  # lora_b away from zero: the adapter changes what the model says
        model.update(tree_map(lambda a: a + 0.05 * mx.random.normal(a.shape), model.trainable_parameters()))
        weights = dict(tree_flatten(model.trainable_parameters()))
        mx.save_safetensors(str(folder / f"{step:07d}_adapters.safetensors"), weights)
    mx.save_safetensors(str(folder / "adapters.safetensors"), weights)
    (folder / "adapter_config.json").write_text(json.dumps(config, indent=4))
    return folder


def test_an_mlx_lm_folder_is_added_with_its_base_and_opens_in_every_tab(qtbot, window, mlx_lm_folder, demo_model):  # noqa: F811
    from mlx_lm import load

    from qlora_gui.core.inference.adapters import default_adapter, load_with_adapter

    before = {p.name: p.stat().st_mtime_ns for p in mlx_lm_folder.iterdir()}
    runs = window.runs
    runs.add_run(str(mlx_lm_folder))
    assert runs.selected_run() == str(window.runs_root / "adapters")
    (summary,) = list_runs(window.runs_root)
    assert (summary.status, summary.last_step, summary.model_name) == ("added", 2, demo_model.name)
    assert summary.config["model"] == str(demo_model) and "elsewhere" in summary.notes
    assert runs.try_button.isEnabled() and runs.eval_button.isEnabled() and runs.export_button.isEnabled()
    assert not runs.resume_button.isEnabled()  # no optimizer state: nothing to continue
    assert runs.plot.plotted == [] and runs.plot.without_curve == ["adapters"]  # said, not an empty legend line
    assert {p.name: p.stat().st_mtime_ns for p in mlx_lm_folder.iterdir()} == before

    # The same model mlx-lm loads from its own folder, base and adapter both.
    adapter = default_adapter(window.runs_root / "adapters")
    assert adapter.step == 2
    ours = load_with_adapter(None, adapter).model
    theirs, tokenizer = load(str(demo_model), adapter_path=str(mlx_lm_folder))
    ids = mx.array([tokenizer.encode("what is the city")])
    assert mx.array_equal(ours(ids), theirs(ids))

    window.tabs.setCurrentWidget(window.playground)
    qtbot.waitUntil(lambda: bool(window.playground.loaded_label), timeout=LONG)
    assert window.playground.loaded_label.startswith("adapters @ step 2")

    with qtbot.waitSignal(runs.evaluated, timeout=LONG):
        runs.eval_button.click()
    saved = json.loads((window.runs_root / "adapters" / "evaluation.json").read_text())["results"]
    assert saved[0]["adapter_loss"] != saved[0]["base_loss"]
    assert saved[0]["rows"] == 8 and saved[0]["all_rows"]  # mlx-lm batched its validation its own way: all rows

    window.export_run(str(window.runs_root / "adapters"))
    dialog = window.export_dialog
    dialog.open_when_done = False
    dialog.format.setCurrentIndex(dialog.format.findData("peft"))
    dialog.export_button.click()
    qtbot.waitUntil(lambda: dialog.job is None, timeout=LONG)
    assert dialog.result_path is not None and (dialog.result_path / "adapter_config.json").is_file()
    dialog.close()


def test_an_mlx_lm_lora_folder_is_added_with_the_base_the_user_picks(
    qtbot,
    window,  # noqa: F811
    mlx_lm_folder,
    demo_model,
    monkeypatch,
    tmp_path,
):
    """mlx-lm-lora (5.10) writes adapter_config.json with lora_parameters and num_layers only, and its fused model
    beside the adapters: the base is asked for, never taken from the fused model in the folder."""
    from mlx_lm import load
    from PySide6.QtWidgets import QFileDialog

    from qlora_gui.core.inference.adapters import default_adapter, load_with_adapter
    from qlora_gui.core.runs.run_import import BaseModelNeeded

    lora = {"rank": 8, "dropout": 0.0, "scale": 20.0, "use_dora": False, "num_layers": 1}
    (mlx_lm_folder / "adapter_config.json").write_text(json.dumps({"lora_parameters": lora, "num_layers": 1}))
    with pytest.raises(BaseModelNeeded, match="pick the base model it was trained on"):
        add_run_folder(mlx_lm_folder, window.runs_root)
    asked = []
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a: asked.append(a[1]) or str(demo_model))
    window.runs.add_run(str(mlx_lm_folder))
    assert asked == ["The base model adapters was trained on"]
    assert window.runs.selected_run() == str(window.runs_root / "adapters")
    adapter = default_adapter(window.runs_root / "adapters")
    assert adapter.step == 2 and adapter.config["model"] == str(demo_model)
    theirs, tokenizer = load(str(demo_model), adapter_path=str(mlx_lm_folder))
    ids = mx.array([tokenizer.encode("list the score")])
    assert mx.array_equal(load_with_adapter(None, adapter).model(ids), theirs(ids))

    # Its folder names no data: Evaluate asks for a file, then measures its validation share (split as training
    # splits one file).
    data = write_jsonl(tmp_path / "eval" / "rows.jsonl", [{"text": t} for t in fixture_texts(30, seed=3)])
    picked = []
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a: picked.append(a[1]) or (str(data), ""))
    with qtbot.waitSignal(window.runs.evaluated, timeout=LONG):
        window.runs.eval_button.click()
    assert picked and "does not name any" in picked[0]
    saved = json.loads((window.runs_root / "adapters" / "evaluation.json").read_text())["results"]
    assert 0 < saved[-1]["rows"] < 30 and saved[-1]["adapter_loss"] != saved[-1]["base_loss"]


def test_a_folder_that_is_not_a_run_says_what_it_lacks(qtbot, window, tmp_path):  # noqa: F811
    (tmp_path / "empty").mkdir()
    window.runs.add_run(str(tmp_path / "empty"))
    assert "no adapters.safetensors or adapter_config.json here" in window.runs.summary.text()
    assert list_runs(window.runs_root) == []
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "adapters.safetensors").write_bytes(b"")
    (tmp_path / "odd" / "adapter_config.json").write_text("[1, 2]")
    with pytest.raises(UserError, match="not an adapter config"):
        add_run_folder(tmp_path / "odd", window.runs_root)


def test_one_of_our_runs_kept_elsewhere_is_copied_its_weights_linked_and_its_folder_named(tmp_path):
    source = tmp_path / "elsewhere" / "run-1"
    (source / "checkpoints" / "0000002").mkdir(parents=True)
    (source / "config.yaml").write_text(f"model: m\ndata: d\nadapter_path: {source}\n")
    (source / "metrics.jsonl").write_text('{"event": "step", "step": 1, "loss": 2.0}\n')
    mx.save_safetensors(str(source / "adapters.safetensors"), {"a": mx.zeros(2)})
    mx.save_safetensors(str(source / "checkpoints" / "0000002" / "adapters.safetensors"), {"a": mx.ones(2)})
    (source / "owner.lock").write_text("")
    added = add_run_folder(source, tmp_path / "runs")
    assert added == tmp_path / "runs" / "run-1" and not (added / "owner.lock").exists()
    assert f"adapter_path: {added}" in (added / "config.yaml").read_text()  # a resume writes here
    assert f"adapter_path: {source}" in (source / "config.yaml").read_text()
    # weights shared (this app replaces them whole), metrics copied (a resume appends to them)
    assert (added / "adapters.safetensors").stat().st_ino == (source / "adapters.safetensors").stat().st_ino
    assert (added / "metrics.jsonl").stat().st_ino != (source / "metrics.jsonl").stat().st_ino
    assert (added / "checkpoints" / "0000002" / "adapters.safetensors").is_file()
    assert add_run_folder(source, tmp_path / "runs").name == "run-1-2"  # never over another run
    with pytest.raises(UserError, match="is in the runs folder already"):
        add_run_folder(added, tmp_path / "runs")
