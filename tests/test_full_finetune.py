"""Full fine-tuning (fine_tune_type: full): every weight of the last N layers trained, the rest untouched, a
quantized base refused, a run killed with SIGKILL resumed bit-exactly from its checkpoint, and the run folder
loaded by mlx_lm.load."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
from conftest import tiny_config
from mlx.utils import tree_flatten

from qlora_gui.core.errors import ConfigError, ModelError, UserError
from qlora_gui.core.events import Finished, RunStarted, ValidationResult
from qlora_gui.core.model.loader import load_base, train_whole_layers
from qlora_gui.core.runs.run_admin import describe_settings
from qlora_gui.core.train.trainer import Trainer

FULL = dict(fine_tune_type="full", num_layers=1, iters=4, learning_rate=1e-3, sample_answers=0, val_batches=1)


def test_full_fine_tuning_trains_every_weight_of_the_last_layers_and_resumes_exactly(tmp_path, demo_model, text_data):
    from mlx_lm import load

    straight = Trainer(tiny_config(demo_model, text_data, tmp_path / "straight", **FULL)).run()
    assert isinstance(straight, Finished) and straight.step == 4
    trained = mx.load(str(tmp_path / "straight" / "adapters.safetensors"))
    base = dict(tree_flatten(load_base(demo_model).model.parameters()))
    last = len([k for k in base if k.endswith("input_layernorm.weight")]) - 1
    assert set(trained) == {k for k in base if k.startswith(f"model.layers.{last}.")}
    for key, value in trained.items():  # every weight moved, and kept its dtype
        assert value.dtype == base[key].dtype and not np.array_equal(np.array(value), np.array(base[key])), key

    cfg = tiny_config(demo_model, text_data, tmp_path / "resumed", **{**FULL, "save_every": 2})
    kill_at_first_checkpoint(cfg, tmp_path / "full.yaml")  # as the LoRA run of test_run_lock.py
    cfg.resume = True
    events = []
    assert Trainer(cfg, events.append).run().step == 4
    assert next(e for e in events if isinstance(e, RunStarted)).start_step == 2
    resumed = mx.load(str(tmp_path / "resumed" / "adapters.safetensors"))
    for key, value in trained.items():
        np.testing.assert_array_equal(np.array(resumed[key]), np.array(value), err_msg=key)

    model, _ = load(str(demo_model), adapter_path=str(tmp_path / "straight"))  # mlx-lm reads the run folder
    params = dict(tree_flatten(model.parameters()))
    for key, value in trained.items():
        np.testing.assert_array_equal(np.array(params[key]), np.array(value))
    assert params["model.embed_tokens.weight"].shape == base["model.embed_tokens.weight"].shape
    np.testing.assert_array_equal(
        np.array(params["model.embed_tokens.weight"]), np.array(base["model.embed_tokens.weight"])
    )
    assert describe_settings({"fine_tune_type": "full", "learning_rate": 1e-3}).startswith("full · lr")


def test_playground_evaluate_and_export_use_a_full_fine_tuning_run_folder(tmp_path, demo_model, text_data):
    """Its base side is the base (the trained weights swapped out), its adapter side and the export the run's."""
    from mlx_lm import load

    from qlora_gui.core.after.evaluation import evaluate
    from qlora_gui.core.after.export import ExportRequest, export
    from qlora_gui.core.inference.adapters import base_view, default_adapter, load_with_adapter
    from qlora_gui.core.inference.generation import SamplingSettings, format_prompt, generate_side_by_side

    run = tmp_path / "run"
    events = []
    assert Trainer(tiny_config(demo_model, text_data, run, **{**FULL, "learning_rate": 1e-2}), events.append).run()
    adapter = default_adapter(run)
    loaded = load_with_adapter(None, adapter)
    base = load_base(demo_model)
    ids = mx.array([loaded.tokenizer.encode("table name")])
    with base_view(loaded.model):
        assert mx.array_equal(loaded.model(ids), base.model(ids))
    tuned = loaded.model(ids)
    assert not mx.array_equal(tuned, base.model(ids))  # the view was undone

    prompt = format_prompt(loaded.tokenizer, "how many city")
    texts = generate_side_by_side(loaded.model, loaded.tokenizer, prompt, SamplingSettings(temperature=0.0,
                                  max_tokens=6), lambda u: None)  # fmt: skip
    assert texts["base"] != texts["adapter"]

    result = evaluate(adapter=adapter)
    val_loss = [e.val_loss for e in events if isinstance(e, ValidationResult)][-1]
    assert result.adapter_loss == pytest.approx(val_loss, abs=1e-5) and result.base_loss > result.adapter_loss

    out = export(ExportRequest(adapter, "mlx", tmp_path / "exported")).path
    exported, _ = load(str(out))  # a whole model folder, the trained weights in it
    assert mx.allclose(exported(ids), tuned, atol=1e-5)
    with pytest.raises(UserError, match="a 'full' fine-tune has no low-rank adapter; export the fused model"):
        export(ExportRequest(adapter, "peft", tmp_path / "peft"))


def test_dpos_reference_under_full_fine_tuning_is_the_base(demo_model):
    from mlx.utils import tree_map

    from qlora_gui.core.config import TrainConfig
    from qlora_gui.core.inference.adapters import base_view
    from qlora_gui.core.model.loader import add_adapters

    model, base = load_base(demo_model).model, load_base(demo_model).model
    add_adapters(model, TrainConfig(fine_tune_type="full", num_layers=1, train_mode="dpo"))
    model.update(tree_map(lambda a: a + 0.1, model.trainable_parameters()))  # as training moves them
    ids = mx.array([[1, 5, 9, 12]])
    moved = model(ids)
    with base_view(model):
        assert mx.array_equal(model(ids), base(ids))
    assert mx.array_equal(model(ids), moved)


def kill_at_first_checkpoint(cfg, config_file):
    """`qlora-gui train` on cfg, killed with SIGKILL as soon as its first checkpoint is on disk."""
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    config_file.write_text(cfg.to_yaml())
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "QLORA_GUI_NO_BLAS_REEXEC": "1"}
    child = subprocess.Popen(
        [sys.executable, "-m", "qlora_gui", "train", "-c", str(config_file)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=Path(__file__).parents[1], env=env,
    )  # fmt: skip
    for line in child.stdout:
        if "checkpoints/0000002" in line:
            child.send_signal(signal.SIGKILL)
            break
    child.wait()
    assert child.returncode == -signal.SIGKILL


def test_a_quantized_base_is_refused_with_the_reason(demo_model):
    with pytest.raises(ConfigError, match="a base quantized on load has none: use lora or dora"):
        tiny_config(demo_model, "d", "r", fine_tune_type="full", quantize_bits=4).validate()
    model = load_base(demo_model).model
    nn.quantize(model, group_size=32, bits=4)
    model.freeze()
    with pytest.raises(ModelError, match="full fine-tuning needs a float base"):
        train_whole_layers(model, 1)


def test_the_memory_estimate_counts_the_trained_layers_gradients_and_optimizer_state(demo_model):
    from qlora_gui.core.config import TrainConfig
    from qlora_gui.core.train.estimate import estimate_memory

    adamw = estimate_memory(demo_model, TrainConfig(fine_tune_type="full", num_layers=2))
    sgd = estimate_memory(demo_model, TrainConfig(fine_tune_type="full", num_layers=2, optimizer="sgd"))
    lora = estimate_memory(demo_model, TrainConfig(num_layers=2))
    assert adamw and sgd and lora
    assert adamw.adapters == sgd.adapters * 3 // 2 > lora.adapters  # gradient + 2 moments against gradient + 1
