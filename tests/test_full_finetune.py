"""Full fine-tuning (fine_tune_type: full): every weight of the last N layers trained, the rest untouched, a
quantized base refused, checkpoints resumed bit-exactly, and the run folder loaded by mlx_lm.load."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
from conftest import tiny_config
from mlx.utils import tree_flatten

from qlora_gui.core.errors import ConfigError, ModelError
from qlora_gui.core.model.loader import load_base, train_whole_layers
from qlora_gui.core.runs.run_admin import describe_settings
from qlora_gui.core.train.events import Finished, StepReport
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

    cfg = tiny_config(demo_model, text_data, tmp_path / "resumed", **FULL)
    holder = {}
    trainer = holder["t"] = Trainer(cfg, lambda e: isinstance(e, StepReport) and e.step == 2 and holder["t"].stop())
    assert trainer.run().step == 2
    cfg.resume = True
    assert Trainer(cfg).run().step == 4
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


def test_a_quantized_base_is_refused_with_the_reason(demo_model):
    with pytest.raises(ConfigError, match="a base quantized on load has none: use lora or dora"):
        tiny_config(demo_model, "d", "r", fine_tune_type="full", quantize_bits=4).validate()
    model = load_base(demo_model).model
    nn.quantize(model, group_size=32, bits=4)
    model.freeze()
    with pytest.raises(ModelError, match="full fine-tuning needs a float base"):
        train_whole_layers(model, 1)


def test_the_memory_estimate_counts_the_trained_layers_gradients_and_optimizer_state(demo_model):
    from qlora_gui.core.train.config import TrainConfig
    from qlora_gui.core.train.estimate import estimate_memory

    adamw = estimate_memory(demo_model, TrainConfig(fine_tune_type="full", num_layers=2))
    sgd = estimate_memory(demo_model, TrainConfig(fine_tune_type="full", num_layers=2, optimizer="sgd"))
    lora = estimate_memory(demo_model, TrainConfig(num_layers=2))
    assert adamw and sgd and lora
    assert adamw.adapters == sgd.adapters * 3 // 2 > lora.adapters  # gradient + 2 moments against gradient + 1
