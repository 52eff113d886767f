"""The measured preflight: real steps on the longest rows, and a batch-size search whose pick trains within it."""

from __future__ import annotations

import gc
import random

import mlx.core as mx
import pytest
from conftest import write_jsonl
from test_gui import LONG, store, wait_checked, window  # noqa: F401  (fixtures)
from test_trainer import make_config, of, run

from qlora_gui.core.events import Finished, StepReport
from qlora_gui.core.train.preflight import preflight, preflight_in_child


def long_rows(tmp_path, n: int = 32):
    """Rows of about 500 tokens, so that activations, not the tiny model's weights, decide the peak."""
    rng = random.Random(0)
    words = "select count name city team year score from where table the of and what how many".split()
    return write_jsonl(
        tmp_path / "long.jsonl", [{"text": " ".join(rng.choice(words) for _ in range(260))} for _ in range(n)]
    )


def test_preflight_on_the_demo_model_prints_peak_speed_and_duration(tmp_path, demo_model, text_data, capsys):
    from qlora_gui.cli import main

    code = main(
        [
            "train",
            "--model",
            str(demo_model),
            "--data",
            str(text_data),
            "--num-layers",
            "2",
            "--iters",
            "40",
            "--preflight",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0 and "Preflight: 40 steps" in out, out
    assert "batch 4, max length" in out and "GB," in out and "tokens/s" in out and "(fits)" in out
    assert "The settings fit. The whole run: about" in out
    assert not (tmp_path / "runs").exists()  # nothing is saved


@pytest.mark.slow  # end-to-end: a real run of many steps
def test_the_batch_size_it_picks_trains_within_the_stated_memory(tmp_path, demo_model):
    data = long_rows(tmp_path)
    settings = dict(batch_size=16, max_seq_length=1024, iters=3, val_batches=1, save_every=1000)
    free = preflight(make_config(demo_model, data, tmp_path / "unused", **settings, memory_limit_gb=1000.0))
    whole_batch = free.trials[0]
    assert free.fits_as_set and whole_batch.batch_size == 16 and whole_batch.peak_gb > 0

    limit = whole_batch.peak_gb / 3  # 16 and 8 rows cannot fit; the search must go lower
    tight = preflight(make_config(demo_model, data, tmp_path / "unused", **settings, memory_limit_gb=limit))
    chosen = tight.chosen
    assert not tight.fits_as_set and chosen is not None and chosen.batch_size in (4, 2, 1)
    assert [t.batch_size for t in tight.trials][:2] == [16, 8] and chosen.peak_gb <= limit
    assert tight.run_seconds and tight.run_seconds > 0

    gc.collect()
    mx.clear_cache()
    mx.reset_peak_memory()  # what the run itself takes, from here
    picked = {**settings, "batch_size": chosen.batch_size}
    _, result, events = run(make_config(demo_model, data, tmp_path / "run", **picked))
    assert isinstance(result, Finished) and result.step == 3
    assert max(e.mlx_peak_gb for e in of(events, StepReport)) <= limit


@pytest.mark.slow  # end-to-end: a real run of many steps
def test_the_app_runs_it_in_a_child_process(tmp_path, demo_model, text_data):
    result = preflight_in_child(make_config(demo_model, text_data, tmp_path / "unused", iters=10))
    assert result.fits_as_set and result.trials[0].peak_gb > 0 and result.total_steps == 10


def test_the_settings_tab_measures_offers_what_fits_and_start_uses_the_measured_peak(
    qtbot,
    window,  # noqa: F811 (the imported fixture)
    tmp_path,
    monkeypatch,
):
    window.open_dataset(long_rows(tmp_path))
    wait_checked(qtbot, window)
    panel, box = window.settings_panel, window.settings_panel.preflight
    cfg = panel.config()
    cfg.batch_size, cfg.max_seq_length = 16, 1024
    panel.set_config(cfg)
    box.check_button.click()
    assert box.job is not None and not box.check_button.isEnabled()
    qtbot.waitUntil(lambda: box.job is None, timeout=LONG)
    assert "The settings fit" in box.text.text() and box.apply_button.isHidden()
    peak = box.result.trials[0].peak_gb
    assert box.measured_share(window.current_config()) == peak / box.result.limit_gb
    from qlora_gui.ui.views.settings_panel import size_text

    said = f"Memory: {size_text(peak * 2**30)} peak measured for these settings"
    assert panel.estimate_label.text().startswith(said)
    cfg = panel.config()
    cfg.lora_parameters = {**cfg.lora_parameters, "rank": 8}
    panel.set_config(cfg)
    assert box.measured_share(window.current_config()) is None  # other settings: not measured
    assert panel.estimate_label.text().startswith("Memory estimate:")  # ... so the estimate again
    cfg.lora_parameters = {**cfg.lora_parameters, "rank": 4}
    panel.set_config(cfg)

    cfg = panel.config()
    cfg.memory_limit_gb = peak / 2  # 16 rows no longer fit
    panel.set_config(cfg)
    limit = panel.config().memory_limit_gb  # as the box holds it (0.1 GB steps)
    assert limit < peak and box.measured_share(window.current_config()) == peak / limit  # same peak, new limit
    box.check_button.click()
    qtbot.waitUntil(lambda: box.job is None, timeout=LONG)
    assert "To fit: batch" in box.text.text() and not box.apply_button.isHidden()
    chosen = box.result.chosen
    box.apply_button.click()
    assert panel.config().batch_size == chosen.batch_size < 16
    asked = []
    monkeypatch.setattr(window, "confirm", lambda title, text: asked.append(text) or False)
    cfg = panel.config()
    cfg.batch_size = 16
    panel.set_config(cfg)
    box.result.trials[0].peak_gb = 10 * cfg.memory_limit_gb  # as measured for these settings
    box.set_measured(box.result, window.current_config())
    wait_checked(qtbot, window)  # a new batch size checks the data again
    window.start_training()
    assert asked and "measured peak memory" in asked[0] and window.worker is None
