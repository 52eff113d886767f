"""The CPU fast path for a frozen quantized base gives QuantizedLinear's outputs and gradients."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from conftest import close
from mlx.utils import tree_flatten

from qlora_gui.core.config import TrainConfig
from qlora_gui.core.model.fast_quant import (
    FastQuantizedLinear,
    restore_quantized_layers,
    use_fast_quantized_layers,
)
from qlora_gui.core.model.loader import add_adapters, load_base


def test_layer_outputs_and_input_gradients_match():
    mx.random.seed(0)
    for bits, group in ((4, 64), (8, 32)):
        ref = nn.QuantizedLinear(128, 96, bias=True, group_size=group, bits=bits)
        fast = nn.QuantizedLinear(128, 96, bias=True, group_size=group, bits=bits)
        fast.update(ref.parameters())
        assert use_fast_quantized_layers(nn.Sequential(fast)) == 1 and type(fast) is FastQuantizedLinear
        x = mx.random.normal((3, 7, 128))
        np.testing.assert_allclose(np.array(fast(x)), np.array(ref(x)), atol=close(1e-4), rtol=close(1e-4))
        g_ref = mx.grad(lambda v, layer=ref: (layer(v) ** 2).sum())(x)
        g_fast = mx.grad(lambda v, layer=fast: (layer(v) ** 2).sum())(x)
        np.testing.assert_allclose(np.array(g_fast), np.array(g_ref), atol=close(1e-3), rtol=close(1e-4))


def test_lora_gradients_on_a_quantized_model_match(demo_model):
    cfg = TrainConfig(model="m", data="d", num_layers=2, lora_parameters={"rank": 4, "scale": 10.0, "dropout": 0.0})
    results = []
    for fast in (False, True):
        loaded = load_base(demo_model, quantize_bits=4, group_size=32)
        add_adapters(loaded.model, cfg)
        model = loaded.model
        model.load_weights(
            [
                (k, mx.ones_like(v) * 0.01)
                for k, v in tree_flatten(model.trainable_parameters())
                if k.endswith("lora_b")
            ],
            strict=False,
        )
        if fast:
            # per block: q/k/v as one (grouped_lora.py), o, gate/up as one, down; and lm_head
            assert use_fast_quantized_layers(model) == 9
        tokens = mx.array(np.random.default_rng(0).integers(0, 300, size=(2, 24)), dtype=mx.int32)

        def loss(m, tokens=tokens):
            logits = m(tokens[:, :-1]).astype(mx.float32)
            return nn.losses.cross_entropy(logits, tokens[:, 1:]).mean()

        value, grads = nn.value_and_grad(model, loss)(model)
        results.append((value.item(), dict(tree_flatten(grads))))
        if fast:
            restore_quantized_layers(model)
            assert not any(type(m) is FastQuantizedLinear for _, m in model.named_modules())
    (v_ref, g_ref), (v_fast, g_fast) = results
    assert abs(v_fast - v_ref) < close(1e-4)
    assert g_ref.keys() == g_fast.keys()
    for k in g_ref:
        np.testing.assert_allclose(np.array(g_fast[k]), np.array(g_ref[k]), atol=close(1e-5), rtol=close(1e-3))
