"""The trainer end to end on the tiny model: leftovers, bad steps, checkpoints, exact resume, determinism."""

from __future__ import annotations

import json
import math
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest
from conftest import close, fixture_texts, poisoned_loss, tiny_config, write_jsonl

from qlora_gui.core.config import TrainConfig
from qlora_gui.core.events import (
    CheckpointSaved,
    Failed,
    Finished,
    RunStarted,
    StepReport,
    TrainWarning,
    ValidationResult,
)
from qlora_gui.core.runs import checkpoints as ckpt
from qlora_gui.core.runs.run_folder import RunFolder
from qlora_gui.core.train.trainer import Trainer


def make_config(demo_model, data, run_dir, **kw) -> TrainConfig:
    return tiny_config(demo_model, data, run_dir, **kw)


def run(cfg, **kw):
    events = []
    trainer = Trainer(cfg, events.append, **kw)
    result = trainer.run()
    return trainer, result, events


def of(events, cls):
    return [e for e in events if isinstance(e, cls)]


def test_leftover_micro_batches_are_applied(tmp_path, demo_model):
    # 40 rows / batch 4 = 10 micro-batches; accumulation 4 -> 4, 4 and a leftover 2: 3 updates per epoch.
    data = write_jsonl(tmp_path / "d" / "train.jsonl", [{"text": t} for t in fixture_texts(40, seed=3)])
    write_jsonl(tmp_path / "d" / "valid.jsonl", [{"text": t} for t in fixture_texts(8, seed=4)])
    cfg = make_config(demo_model, data.parent, tmp_path / "run", grad_accumulation_steps=4, epochs=2)
    trainer, result, events = run(cfg)
    assert isinstance(result, Finished), result
    started = of(events, RunStarted)[0]
    assert started.steps_per_epoch == 3 and started.total_steps == 6
    assert trainer.optimizer_updates == 6
    assert [e.step for e in of(events, StepReport)] == [1, 2, 3, 4, 5, 6]
    # each epoch trains on every row once: two epochs carry twice the tokens of one
    reports = of(events, StepReport)
    assert reports[5].trained_tokens == 2 * reports[2].trained_tokens
    state = json.loads((tmp_path / "run" / "checkpoints" / "0000006" / "state.json").read_text())
    assert state["epoch"] == 2 and state["batch_pos"] == 0


def test_every_training_token_is_seen_each_epoch(tmp_path, demo_model, tokenizer):
    from qlora_gui.core.data.dataset import check_data

    data = write_jsonl(tmp_path / "t.jsonl", [{"text": t} for t in fixture_texts(30, seed=6)])
    cfg = make_config(demo_model, data, tmp_path / "run", batch_size=4, grad_accumulation_steps=3, valid_fraction=0)
    trainer, result, events = run(cfg)
    enc = check_data(data, tokenizer, valid_fraction=0).encoded["train"]
    expected = sum(int(m[1:].sum()) for m in enc.trained)
    assert of(events, StepReport)[-1].trained_tokens == expected
    assert trainer.optimizer_updates == 3  # 8 micro-batches (7 full + 1 of 2 rows) -> ceil(8 / 3)


@pytest.fixture()
def train_only(tmp_path):
    """Training rows and no validation, so every loss call is a training micro-batch."""
    return write_jsonl(tmp_path / "train_only.jsonl", [{"text": t} for t in fixture_texts(40, seed=8)])


def training_batches(cfg, tokenizer):
    """The micro-batches of epoch 0, in the order the trainer takes them."""
    from qlora_gui.core.data.batching import epoch_batches, make_batch
    from qlora_gui.core.data.dataset import check_data

    enc = check_data(cfg.data, tokenizer, valid_fraction=cfg.valid_fraction).encoded["train"]
    return [make_batch(enc, idx) for idx in epoch_batches(enc.lengths, cfg.batch_size, cfg.seed, 0)]


def test_a_nan_step_is_skipped_with_a_warning(tmp_path, demo_model, train_only, tokenizer):
    cfg = make_config(demo_model, train_only, tmp_path / "run", iters=6, valid_fraction=0)
    nan_on_third = poisoned_loss(training_batches(cfg, tokenizer)[2:3], math.nan)
    trainer, result, events = run(cfg, loss_fn=nan_on_third)
    assert isinstance(result, Finished)
    warnings = [w for w in of(events, TrainWarning) if "skipped" in w.message]
    assert [w.step for w in warnings] == [3]
    assert warnings[0].message == "step 3: skipped a micro-batch because its loss is not finite"
    assert trainer.optimizer_updates == 5
    weights = mx.load(str(tmp_path / "run" / "adapters.safetensors"))
    assert all(bool(mx.all(mx.isfinite(v)).item()) for v in weights.values())


def test_too_many_bad_steps_stop_the_run_and_keep_the_last_checkpoint(tmp_path, demo_model, train_only, tokenizer):
    cfg = make_config(
        demo_model, train_only, tmp_path / "run", iters=20, save_every=2, max_bad_steps=3, valid_fraction=0
    )
    diverge_later = poisoned_loss(training_batches(cfg, tokenizer)[5:], math.inf)
    trainer, result, events = run(cfg, loss_fn=diverge_later)
    assert isinstance(result, Failed) and result.exit_code == 1
    assert "3 bad micro-batches in a row at step 8" in result.message and "Lower the learning rate" in result.message
    latest = ckpt.latest_checkpoint(tmp_path / "run")
    assert latest is not None and latest.step == 6  # step 6 was skipped: its weights are step 5's
    saved = mx.load(str(latest.path / "adapters.safetensors"))
    assert all(bool(mx.all(mx.isfinite(v)).item()) for v in saved.values())


@pytest.mark.slow  # end-to-end: a real run of many steps
def test_exact_resume_matches_a_straight_run(tmp_path, demo_model, text_data):
    # 48 rows / 4 = 12 micro-batches, accumulation 2 -> 6 steps per epoch, 2 epochs = 12 steps.
    kw = dict(
        epochs=2,
        grad_accumulation_steps=2,
        lora_parameters={"rank": 4, "scale": 10.0, "dropout": 0.1},
        steps_per_eval=5,
    )
    _, straight, _ = run(make_config(demo_model, text_data, tmp_path / "straight", **kw))
    assert isinstance(straight, Finished) and straight.step == 12

    cfg = make_config(demo_model, text_data, tmp_path / "resumed", **kw)
    holder = {}

    def stop_at_8(event):
        if isinstance(event, StepReport) and event.step == 8:  # mid second epoch
            holder["t"].stop()

    trainer = Trainer(cfg, stop_at_8)
    holder["t"] = trainer
    first = trainer.run()
    assert isinstance(first, Finished) and first.stopped and first.step == 8
    assert ckpt.latest_checkpoint(tmp_path / "resumed").step == 8

    cfg.resume = True
    _, second, events = run(cfg)
    assert isinstance(second, Finished) and not second.stopped and second.step == 12
    assert of(events, RunStarted)[0].start_step == 8
    a = mx.load(str(tmp_path / "straight" / "adapters.safetensors"))
    b = mx.load(str(tmp_path / "resumed" / "adapters.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_allclose(np.array(b[k]), np.array(a[k]), atol=close(1e-5), rtol=0)
    assert second.val_loss == pytest.approx(straight.val_loss, abs=close(1e-5))


def test_a_checkpoint_loads_in_mlx_lm(tmp_path, demo_model, text_data):
    from mlx_lm import generate, load

    cfg = make_config(demo_model, text_data, tmp_path / "run", iters=4, save_every=2)
    _, result, events = run(cfg)
    saved = [e for e in of(events, CheckpointSaved)]
    assert [(e.step, e.reason) for e in saved] == [(2, "periodic"), (4, "end")]
    for folder in (Path(saved[0].path), tmp_path / "run"):
        model, tok = load(str(demo_model), adapter_path=str(folder))
        assert isinstance(generate(model, tok, "select", max_tokens=4), str)
    # the loaded adapter is the trained one, not a fresh init
    model, _ = load(str(demo_model), adapter_path=str(tmp_path / "run"))
    trained = mx.load(str(tmp_path / "run" / "adapters.safetensors"))
    from mlx.utils import tree_flatten

    params = dict(tree_flatten(model.parameters()))
    for k, v in trained.items():
        np.testing.assert_array_equal(np.array(params[k]), np.array(v))


@pytest.mark.slow  # end-to-end: a real run of many steps
def test_one_seed_gives_identical_losses(tmp_path, demo_model, text_data):
    losses = []
    for name in ("a", "b"):
        _, result, events = run(make_config(demo_model, text_data, tmp_path / name, iters=6))
        losses.append([e.loss for e in of(events, StepReport)])
    assert losses[0] == losses[1]
    _, _, events = run(make_config(demo_model, text_data, tmp_path / "c", iters=6, seed=1))
    assert [e.loss for e in of(events, StepReport)] != losses[0]


@pytest.mark.slow  # end-to-end: a real run of many steps
def test_loss_falls_on_the_fixture_data(tmp_path, demo_model, text_data):
    _, result, events = run(make_config(demo_model, text_data, tmp_path / "run", epochs=4, steps_per_eval=12))
    vals = [e.val_loss for e in of(events, ValidationResult)]
    assert vals[-1] < vals[0] - 0.5, vals
    losses = [e.loss for e in of(events, StepReport)]
    assert np.mean(losses[-6:]) < np.mean(losses[:6]) - 0.5


def test_run_folder_is_complete_and_metrics_hold_every_event(tmp_path, demo_model, text_data):
    run_dir = tmp_path / "run"
    _, result, events = run(make_config(demo_model, text_data, run_dir, iters=3))
    assert {p.name for p in run_dir.iterdir()} >= {
        "config.yaml",
        "metrics.jsonl",
        "adapters.safetensors",
        "adapter_config.json",
        "checkpoints",
    }
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [x["event"] for x in lines] == [e.kind for e in events]
    config = json.loads((run_dir / "adapter_config.json").read_text())
    assert config["fine_tune_type"] == "lora" and config["num_layers"] == 2 and config["lora_parameters"]["rank"] == 4
    assert not list(run_dir.rglob("*.tmp*"))


@pytest.mark.slow  # end-to-end: a real run of many steps
def test_a_new_run_never_overwrites_an_old_one(tmp_path, demo_model, text_data):
    run(make_config(demo_model, text_data, tmp_path / "run", iters=2))
    before = (tmp_path / "run" / "adapters.safetensors").read_bytes()
    _, result, _ = run(make_config(demo_model, text_data, tmp_path / "run", iters=2, seed=5))
    assert isinstance(result, Failed) and result.exit_code == 2 and "already holds a run" in result.message
    assert (tmp_path / "run" / "adapters.safetensors").read_bytes() == before


def test_bad_data_fails_before_any_weights_load(tmp_path, demo_model, monkeypatch):
    from qlora_gui.core.train import training_model

    data = write_jsonl(tmp_path / "d.jsonl", [{"text": "ok"}] * 8, ['{"text": 1}'])

    def no_loading(*args, **kwargs):
        raise AssertionError("the weights were loaded before the data was checked")

    monkeypatch.setattr(training_model, "load_base", no_loading)
    _, result, _ = run(make_config(demo_model, data, tmp_path / "run", iters=2))
    assert isinstance(result, Failed) and result.exit_code == 2
    assert result.problems == [f"{data}:9: 'text' must be a string, got a number"]


@pytest.mark.slow  # end-to-end: a real run of many steps
def test_quantize_on_load_and_dora(tmp_path, demo_model, text_data):
    _, result, events = run(
        make_config(
            demo_model,
            text_data,
            tmp_path / "q",
            iters=3,
            quantize_bits=4,
            quantize_group_size=32,
            fine_tune_type="dora",
        )
    )
    assert isinstance(result, Finished), result
    config = json.loads((tmp_path / "q" / "adapter_config.json").read_text())
    assert config["base_quantization"] == {"bits": 4, "group_size": 32} and config["fine_tune_type"] == "dora"
    started = of(events, RunStarted)[0]
    assert 0 < started.trainable_params < started.total_params


def test_a_full_disk_during_a_save_keeps_the_last_checkpoint_whole_and_says_so(
    tmp_path, demo_model, text_data, monkeypatch
):
    import errno

    real_save = ckpt.mx.save_safetensors

    def disk_fills_at_step_4(path, arrays, *args, **kwargs):
        if "0000004" in Path(path).parent.name:  # part-way through the step-4 checkpoint
            Path(path).write_bytes(b"\0" * 100)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(path, arrays, *args, **kwargs)

    monkeypatch.setattr(ckpt.mx, "save_safetensors", disk_fills_at_step_4)
    run_dir = tmp_path / "run"
    _, result, _ = run(make_config(demo_model, text_data, run_dir, iters=6, save_every=2))
    assert isinstance(result, Failed) and result.exit_code == 1
    for said in ("step 4", str(run_dir), "No space left on device", "disk is full", "step 2 is intact"):
        assert said in result.message, said
    assert [c.step for c in ckpt.list_checkpoints(run_dir)] == [2]
    assert not [p for p in RunFolder(run_dir).checkpoints.iterdir() if p.name.startswith(".")]  # no half checkpoint
    adapters, _, state = ckpt.load_checkpoint(ckpt.latest_checkpoint(run_dir).path)
    whole = mx.load(str(RunFolder(run_dir).adapters))
    assert state["step"] == 2 and all(np.array_equal(np.array(whole[k]), np.array(adapters[k])) for k in adapters)
