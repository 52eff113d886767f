"""Grouped LoRA (q/k/v and gate/up computed together) is mlx-lm's LoRA: outputs, gradients, files."""

from __future__ import annotations

import json

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from conftest import close
from mlx.utils import tree_flatten

from qlora_gui.core.config import TrainConfig
from qlora_gui.core.model.grouped_lora import SharedInputLoRA, grouped_layout, load_adapter_weights, mlx_layout
from qlora_gui.core.model.loader import adapter_weights, add_adapters, load_base, parameter_counts
from qlora_gui.core.model.stacked_lora import per_layer_layout
from qlora_gui.core.train.losses import token_loss

LORA = {"rank": 4, "scale": 10.0, "dropout": 0.0}


def models(demo_model, bits=None):
    """Ours (grouped) and mlx-lm's (separate layers) with the same random adapters."""
    from mlx_lm.tuner.utils import linear_to_lora_layers

    ours = load_base(demo_model, bits, 32).model
    add_adapters(ours, TrainConfig(model="m", data="d", num_layers=2, lora_parameters=LORA))
    theirs = load_base(demo_model, bits, 32).model
    theirs.freeze()
    linear_to_lora_layers(theirs, 2, dict(LORA))
    mx.random.seed(1)
    weights = {k: mx.random.normal(v.shape) * 0.05 for k, v in tree_flatten(theirs.trainable_parameters())}
    theirs.load_weights(list(weights.items()), strict=False)
    load_adapter_weights(ours, weights)
    return ours, theirs, weights


def test_groups_form_and_the_adapters_keep_mlx_lms_names(demo_model):
    ours, theirs, weights = models(demo_model)
    groups = [m for _, m in ours.named_modules() if isinstance(m, SharedInputLoRA)]
    assert len(groups) == 4  # q/k/v and gate/up in each of 2 blocks
    assert all("base" in g for g in groups)  # their base layers as one too: one matmul forward, one backward
    # 4 adapters per block (q/k/v, o, gate/up, down), A and B each, stacked across the 2 blocks (stacked_lora.py)
    assert len(tree_flatten(ours.trainable_parameters())) == 8 < len(weights) == 28
    saved = adapter_weights(ours)
    assert saved.keys() == weights.keys()
    assert all(np.array_equal(np.array(saved[k]), np.array(v)) for k, v in weights.items())
    assert parameter_counts(ours)[0] == parameter_counts(theirs)[0]  # the zeros between blocks do not count


def test_outputs_and_gradients_are_those_of_separate_adapters(demo_model):
    for bits in (None, 4):
        ours, theirs, _ = models(demo_model, bits)
        rng = np.random.default_rng(0)
        args = (
            mx.array(rng.integers(1, 300, size=(2, 12)).astype(np.int32)),
            mx.arange(0, 24, dtype=mx.int32),
            mx.array(rng.integers(0, 300, size=24).astype(np.int32)),
            mx.ones((24,)),
        )
        np.testing.assert_allclose(np.array(ours(args[0])), np.array(theirs(args[0])), atol=close(1e-5), rtol=0)
        (loss, _), g = nn.value_and_grad(ours, token_loss)(ours, *args)
        (ref_loss, _), ref = nn.value_and_grad(theirs, token_loss)(theirs, *args)
        assert abs(loss.item() - ref_loss.item()) <= close(1e-5) * abs(ref_loss.item())
        flat = per_layer_layout(ours, dict(tree_flatten(g)))  # each block's slice of the stacked gradients
        for name, group in ((n, m) for n, m in ours.named_modules() if isinstance(m, SharedInputLoRA)):
            mask = np.array(group._mask.value)  # between the blocks the gradient is exactly zero
            assert not np.array(flat[f"{name}.lora_b"])[mask == 0].any()
        got, want = mlx_layout(ours, flat), dict(tree_flatten(ref))
        assert got.keys() == want.keys()
        for k in want:
            np.testing.assert_allclose(np.array(got[k]), np.array(want[k]), atol=close(1e-5), rtol=1e-4, err_msg=k)


def test_layouts_round_trip_exactly_with_optimizer_moments(demo_model):
    ours, _, weights = models(demo_model)
    moments = {f"{k}.{m}": mx.random.normal(v.shape) for k, v in weights.items() for m in ("m", "v")}
    flat = {"step": mx.array(3), **weights, **moments}
    grouped = grouped_layout(ours, flat)
    assert "step" in grouped and any(".lora_group_q_proj.lora_b.m" in k for k in grouped)
    back = mlx_layout(ours, grouped)
    assert back.keys() == flat.keys()
    assert all(np.array_equal(np.array(back[k]), np.array(v)) for k, v in flat.items())


def test_mlx_lm_loads_our_adapters_and_answers_the_same(demo_model, tmp_path):
    from mlx_lm.tuner.utils import load_adapters

    ours, _, _ = models(demo_model)
    mx.save_safetensors(str(tmp_path / "adapters.safetensors"), adapter_weights(ours))
    config = {"fine_tune_type": "lora", "num_layers": 2, "lora_parameters": LORA}
    (tmp_path / "adapter_config.json").write_text(json.dumps(config))
    theirs = load_base(demo_model).model
    load_adapters(theirs, str(tmp_path))
    tokens = mx.array([[5, 17, 42, 9, 100, 3]])
    np.testing.assert_allclose(np.array(ours(tokens)), np.array(theirs(tokens)), atol=close(1e-5), rtol=0)


def test_the_base_view_switches_grouped_adapters_off(demo_model):
    from qlora_gui.core.inference.adapters import base_view

    ours, _, _ = models(demo_model, 4)
    base = load_base(demo_model, 4, 32).model
    tokens = mx.array([[5, 17, 42, 9, 100, 3]])
    adapted = np.array(ours(tokens))
    with base_view(ours):
        np.testing.assert_allclose(np.array(ours(tokens)), np.array(base(tokens)), atol=close(1e-5), rtol=0)
    assert np.array_equal(np.array(ours(tokens)), adapted)


def test_stacked_adapters_take_a_start_adapter_for_some_blocks_and_unstack_to_the_same_model(demo_model, tmp_path):
    from qlora_gui.core.model.loader import load_start_adapter
    from qlora_gui.core.model.stacked_lora import STACK, unstack_adapters

    ours, _, weights = models(demo_model)
    assert STACK in ours
    before = adapter_weights(ours)
    one_block = {k: v * 2 for k, v in weights.items() if ".layers.1." in k}
    mx.save_safetensors(str(tmp_path / "adapters.safetensors"), one_block)
    load_start_adapter(ours, tmp_path)
    after = adapter_weights(ours)
    for key, value in after.items():  # block 1 from the file, block 0 as it was
        want = one_block.get(key, before[key])
        assert np.array_equal(np.array(value), np.array(want)), key
    tokens = mx.array([[5, 17, 42, 9, 100, 3]])
    stacked = np.array(ours(tokens))
    unstack_adapters(ours)
    assert STACK not in ours and len(tree_flatten(ours.trainable_parameters())) == 16
    assert np.array_equal(np.array(ours(tokens)), stacked)
    assert all(np.array_equal(np.array(v), np.array(after[k])) for k, v in adapter_weights(ours).items())
