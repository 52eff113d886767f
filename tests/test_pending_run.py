"""The run being prepared: each tab sets its part of one TrainConfig, and the others hear what changed."""

from __future__ import annotations

from qlora_gui.core.config import TrainConfig
from qlora_gui.core.runs.pending_run import PROBLEM, PendingRun


def test_each_tab_sets_its_part_and_the_others_hear_only_what_changed(tmp_path):
    pending = PendingRun(tmp_path / "runs")
    heard: list[set[str]] = []
    pending.subscribe(heard.append)
    pending.update(model="/m/tiny", quantize_bits=4)  # the Model tab
    pending.update(data="/d/rows.jsonl", valid_fraction=0.2)  # the Data tab
    settings = TrainConfig(batch_size=8, seed=7, model="ignored", quantize_bits=None)  # the Settings tab's form
    pending.set_settings(settings)
    assert heard == [{"model", "quantize_bits"}, {"data", "valid_fraction"}, {"batch_size", "seed"}]
    pending.set_settings(settings)  # nothing new: nobody is told
    assert len(heard) == 3
    cfg = pending.config_to_start()
    assert cfg is not None and (cfg.model, cfg.quantize_bits, cfg.data, cfg.batch_size, cfg.seed) == (
        "/m/tiny", 4, "/d/rows.jsonl", 8, 7
    )  # fmt: skip
    assert cfg.adapter_path.startswith(str(tmp_path / "runs")) and cfg.adapter_path.endswith("-tiny")
    pending.set_settings(None, "Batch size: must be at least 1")  # a refused value: nothing starts
    assert heard[-1] == {PROBLEM} and pending.config_to_start() is None and pending.config.batch_size == 8
    pending.set_settings(TrainConfig(batch_size=8, seed=7))
    assert heard[-1] == {PROBLEM} and pending.problem == "" and pending.config_to_start() is not None
