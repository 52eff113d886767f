"""mlx-lm's optimizers: each one trains, takes its optimizer_config as mlx-lm passes it, keeps its state in
checkpoints and resumes bit-exactly."""

from __future__ import annotations

import mlx.core as mx
import mlx.optimizers as optim
import numpy as np
import pytest
from conftest import tiny_config

from qlora_gui.core.config import TrainConfig, config_from_dict
from qlora_gui.core.errors import ConfigError
from qlora_gui.core.events import Finished, StepReport
from qlora_gui.core.runs import checkpoints as ckpt
from qlora_gui.core.train.optimizer import build_optimizer
from qlora_gui.core.train.trainer import Trainer

# Each optimizer with arguments that change what it does, so that the test sees them used.
OPTIONS = {
    "adamw": {"weight_decay": 0.05, "betas": [0.8, 0.95]},
    "adam": {"eps": 1e-6},
    "sgd": {"momentum": 0.9},
    "muon": {"momentum": 0.9, "ns_steps": 3},
    "adafactor": {"relative_step": False, "beta_1": 0.9},
}


@pytest.fixture()
def uncompiled():
    """The step run op by op: on the CPU backend each new fused kernel of a compiled step is built with the C++
    compiler once per machine (Adafactor's about 20 of them: minutes on a busy CI machine). What is tested here,
    that a checkpoint holds all of the optimizer's state, holds either way; the compiled step is the same code
    (tests/test_trainer.py resumes it exactly)."""
    mx.disable_compile()
    yield
    mx.enable_compile()


@pytest.mark.parametrize("name", list(OPTIONS))
def test_each_optimizer_resumes_bit_exactly(tmp_path, demo_model, text_data, name, uncompiled):
    kw = dict(iters=4, optimizer=name, optimizer_config={name: OPTIONS[name]}, sample_answers=0, num_layers=1,
              lora_parameters={"rank": 4, "scale": 10.0, "dropout": 0.1}, val_batches=1)  # fmt: skip
    straight = Trainer(tiny_config(demo_model, text_data, tmp_path / "straight", **kw)).run()
    assert isinstance(straight, Finished) and straight.step == 4

    cfg = tiny_config(demo_model, text_data, tmp_path / "resumed", **kw)
    holder = {}
    trainer = holder["t"] = Trainer(cfg, lambda e: isinstance(e, StepReport) and e.step == 2 and holder["t"].stop())
    assert trainer.run().step == 2
    saved = ckpt.load_checkpoint(ckpt.latest_checkpoint(tmp_path / "resumed").path)[1]
    state_keys = {k.rsplit(".", 1)[-1] for k in saved}
    expected = {"adamw": {"m", "v"}, "adam": {"m", "v"}, "sgd": {"v"}, "muon": {"v"},
                "adafactor": {"exp_avg", "exp_avg_sq_row", "exp_avg_sq_col"}}[name]  # fmt: skip
    assert expected <= state_keys and int(saved["step"].item()) == 2
    cfg.resume = True
    resumed = Trainer(cfg).run()
    assert isinstance(resumed, Finished) and resumed.step == 4
    a = mx.load(str(tmp_path / "straight" / "adapters.safetensors"))
    b = mx.load(str(tmp_path / "resumed" / "adapters.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(np.array(b[k]), np.array(a[k]), err_msg=k)


def test_optimizer_config_is_passed_per_optimizer_as_mlx_lm_does():
    cfg = TrainConfig(optimizer="adafactor", optimizer_config=OPTIONS)
    opt = build_optimizer(cfg, 10)
    assert isinstance(opt, optim.Adafactor) and opt.beta_1 == 0.9 and opt.relative_step is False
    cfg.optimizer = "muon"
    opt = build_optimizer(cfg, 10)
    assert isinstance(opt, optim.Muon) and opt.momentum == 0.9 and opt.ns_steps == 3
    cfg.optimizer_config = {"adamw": {"weight_decay": 0.3}}  # another optimizer's: mlx-lm passes nothing
    assert build_optimizer(cfg, 10).weight_decay == 0.01  # Muon's own default


def test_bad_optimizer_config_says_what_to_write():
    for values, why in [
        ({"optimizer_config": {"weight_decay": 0.1}}, "maps each optimizer's name to its arguments"),
        ({"optimizer_config": {"muon": {"betas": [0.9, 0.99]}}}, "'betas' is not an argument of mlx.optimizers.Muon"),
        ({"optimizer": "lion"}, "not one of adamw, adam, sgd, muon, adafactor"),
    ]:
        cfg, _ = config_from_dict({"model": "m", "data": "d", **values})
        with pytest.raises(ConfigError, match=why):
            cfg.validate()


def test_muon_and_adafactor_update_mlx_lms_own_per_projection_matrices(demo_model):
    """Grouped LoRA (grouped_lora.py) is exact only under an element-wise optimizer: Muon orthogonalizes, and
    Adafactor factors the second moment of, each projection's matrix as mlx-lm has it, never a group's."""
    from mlx.utils import tree_flatten, tree_map

    from qlora_gui.core.model.grouped_lora import mlx_layout
    from qlora_gui.core.model.loader import add_adapters, load_base

    lora = {"rank": 4, "scale": 10.0, "dropout": 0.0}
    for name, grouped in [("adamw", True), ("muon", False), ("adafactor", False)]:
        model = load_base(demo_model).model
        add_adapters(model, TrainConfig(optimizer=name, num_layers=1, lora_parameters=lora))
        params = model.trainable_parameters()
        assert any("lora_group_" in k for k, _ in tree_flatten(params)) == grouped, name
        opt = build_optimizer(TrainConfig(optimizer=name), 10)
        opt.update(model, tree_map(lambda a: mx.full(a.shape, 1e-3, a.dtype), params))
        state = mlx_layout(model, dict(tree_flatten(opt.state)))  # what a checkpoint holds: mlx-lm's names
        assert "model.layers.1.self_attn.q_proj.lora_a" in mlx_layout(model, dict(tree_flatten(params)))
        assert not any("lora_group_" in k for k in state) and len(state) > 1, name
