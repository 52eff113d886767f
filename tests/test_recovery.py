"""Recovery from divergence: back to the last checkpoint with half the learning rate, marked, and resumable."""

from __future__ import annotations

import json

import mlx.core as mx
import numpy as np
import pytest
from conftest import close
from test_trainer import make_config, of, run

from qlora_gui.core.events import Failed, Finished, Recovered, StepReport, event_from_row
from qlora_gui.core.runs import checkpoints as ckpt
from qlora_gui.core.runs.run_folder import RunFolder
from qlora_gui.core.train import divergence
from qlora_gui.core.train.trainer import Trainer

pytestmark = pytest.mark.slow  # end-to-end: real runs that diverge and recover

# 48 rows / 4 = 12 steps per epoch; a checkpoint every 4 steps; constant-ish rate so halving shows plainly.
SETTINGS = dict(iters=12, save_every=4, warmup_steps=0, divergence_retries=1)


@pytest.fixture()
def diverge_once_at_step_7(monkeypatch):
    """The guard reports a divergence the first time step 7 runs, as a run of NaN losses would."""
    real_check, fired = divergence.DivergenceGuard.check, []

    def check(self, result, step):
        if step == 7 and not fired:
            fired.append(step)
            raise divergence.Diverged("training diverged: 5 bad micro-batches in a row at step 7")
        return real_check(self, result, step)

    monkeypatch.setattr(divergence.DivergenceGuard, "check", check)
    return fired


def rates(events) -> dict[int, float]:
    return {e.step: e.learning_rate for e in of(events, StepReport)}


def test_a_divergence_goes_back_to_the_last_checkpoint_with_half_the_rate(
    tmp_path, demo_model, text_data, diverge_once_at_step_7
):
    diverge_once_at_step_7.append("not for the straight run")
    _, straight, straight_events = run(
        make_config(demo_model, text_data, tmp_path / "straight", iters=12, warmup_steps=0)
    )
    diverge_once_at_step_7.clear()
    _, result, events = run(make_config(demo_model, text_data, tmp_path / "run", **SETTINGS))
    assert isinstance(straight, Finished) and isinstance(result, Finished) and result.step == 12
    [recovery] = of(events, Recovered)
    assert (recovery.step, recovery.back_to, recovery.lr_scale, recovery.attempt, recovery.of) == (7, 4, 0.5, 1, 1)
    # Steps 5 and 6 ran twice: at the full rate, then again at half of it after going back to step 4.
    reports = [e.step for e in of(events, StepReport)]
    assert reports == [1, 2, 3, 4, 5, 6, 5, 6, 7, 8, 9, 10, 11, 12]
    full, now = rates(straight_events), rates(events)
    for step in range(5, 13):
        assert now[step] == pytest.approx(0.5 * full[step], rel=1e-5)
    state = json.loads((ckpt.latest_checkpoint(tmp_path / "run").path / "state.json").read_text())
    assert state["lr_scale"] == 0.5 and state["recoveries"] == 1 and state["step"] == 12
    kinds = [json.loads(line)["event"] for line in RunFolder(tmp_path / "run").metrics.read_text().splitlines()]
    assert kinds.count("recovery") == 1 and kinds[-1] == "finished"


def test_a_recovered_run_resumes_exactly(tmp_path, demo_model, text_data, diverge_once_at_step_7):
    _, whole, _ = run(make_config(demo_model, text_data, tmp_path / "whole", **SETTINGS))
    diverge_once_at_step_7.clear()
    cfg = make_config(demo_model, text_data, tmp_path / "cut", **SETTINGS)
    holder = {}
    trainer = Trainer(cfg, lambda e: isinstance(e, StepReport) and e.step == 10 and holder["t"].stop())
    holder["t"] = trainer
    first = trainer.run()
    assert isinstance(first, Finished) and first.stopped and first.step == 10
    cfg.resume = True
    _, second, events = run(cfg)
    assert isinstance(second, Finished) and second.step == 12 and not of(events, Recovered)
    a = mx.load(str(tmp_path / "whole" / "adapters.safetensors"))
    b = mx.load(str(tmp_path / "cut" / "adapters.safetensors"))
    for key in a:
        np.testing.assert_allclose(np.array(a[key]), np.array(b[key]), atol=close(1e-6), rtol=close(1e-5))


def test_without_retries_left_the_run_stops_as_before(tmp_path, demo_model, text_data, diverge_once_at_step_7):
    _, result, events = run(
        make_config(demo_model, text_data, tmp_path / "run", **{**SETTINGS, "divergence_retries": 0})
    )
    assert isinstance(result, Failed) and result.exit_code == 1 and "diverged" in result.message
    assert not of(events, Recovered) and ckpt.latest_checkpoint(tmp_path / "run").step == 4


def test_the_loss_chart_drops_the_abandoned_steps_and_marks_the_recovery(qtbot):
    from qlora_gui.ui.widgets.charts import TrainingCharts

    charts = TrainingCharts()
    qtbot.addWidget(charts)
    history = [
        {
            "event": "step",
            "step": s,
            "loss": 3.0 - s / 10,
            "learning_rate": 1e-3,
            "tokens_per_sec": 100.0,
            "mlx_active_gb": 0.1,
            "mlx_peak_gb": 0.2,
            "rss_gb": 0.3,
        }
        for s in range(1, 7)
    ] + [{"event": "recovery", "step": 7, "back_to": 4, "lr_scale": 0.5, "attempt": 1, "of": 1}]
    charts.add_history([event_from_row(r) for r in history], up_to_step=10)  # as a resumed run reads metrics.jsonl
    assert charts.steps == [1, 2, 3, 4] and len(charts.recovery_marks) == 1
    assert charts.recovery_marks[0].value() == 4 and "lr ×0.5" in charts.recovery_marks[0].label.format
    charts.add_recovery(Recovered(5, 2, 0.25, 2, 2))
    assert charts.steps == [1, 2] and len(charts.recovery_marks) == 2
    charts.clear()
    assert charts.recovery_marks == [] and charts.steps == []
