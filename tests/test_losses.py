"""The chunked loss equals the full-logits loss, in value and gradient, for every head it accepts.

Heads covered: an untied lm_head, tied embeddings, 4-bit quantized heads (MLX's kernels and the CPU's
dequantize + matmul path) and Gemma-2's logit soft-capping. A head it cannot reproduce gets the
full-logits loss and a sentence saying so.
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
from conftest import close
from mlx.utils import tree_flatten

from qlora_gui.core.config import TrainConfig
from qlora_gui.core.model.fast_quant import use_fast_quantized_layers
from qlora_gui.core.model.grouped_lora import mlx_layout
from qlora_gui.core.train.losses import (
    CHUNK_ELEMENTS,
    ChunkedLoss,
    chunk_positions,
    chunked_loss_for,
    token_loss,
)


def tiny(kind: str, layers: int = 2) -> nn.Module:
    from mlx_lm.models import gemma2, llama

    mx.random.seed(3)
    if kind == "gemma2":
        model = gemma2.Model(
            gemma2.ModelArgs(
                model_type="gemma2",
                hidden_size=64,
                num_hidden_layers=2,
                intermediate_size=128,
                num_attention_heads=4,
                head_dim=16,
                rms_norm_eps=1e-6,
                vocab_size=300,
                num_key_value_heads=2,
                final_logit_softcapping=5.0,
            )
        )
    else:
        model = llama.Model(
            llama.ModelArgs(
                model_type="llama",
                hidden_size=64,
                num_hidden_layers=layers,
                intermediate_size=128,
                num_attention_heads=4,
                rms_norm_eps=1e-5,
                vocab_size=300,
                num_key_value_heads=2,
                tie_word_embeddings=kind.startswith("tied"),
            )
        )
    if kind.endswith("4bit"):
        nn.quantize(model, group_size=32, bits=4)
    if kind.endswith("fast4bit"):
        use_fast_quantized_layers(model)
    mx.eval(model.parameters())
    from qlora_gui.core.model.loader import add_adapters

    add_adapters(
        model,
        TrainConfig(model="m", data="d", num_layers=-1, lora_parameters={"rank": 4, "scale": 10.0, "dropout": 0.0}),
    )
    params = tree_flatten(model.trainable_parameters())
    model.load_weights([(k, mx.random.normal(v.shape) * 0.1) for k, v in params], strict=False)
    return model


def batch(vocab=300):
    rng = np.random.default_rng(0)
    inputs = rng.integers(1, vocab, size=(3, 16)).astype(np.int32)
    positions = np.sort(rng.choice(3 * 16, size=29, replace=False)).astype(np.int32)
    targets = rng.integers(0, vocab, size=29).astype(np.int32)
    weights = (rng.random(29) < 0.85).astype(np.float32)
    return mx.array(inputs), mx.array(positions), mx.array(targets), mx.array(weights)


@pytest.mark.parametrize("kind", ["untied", "tied", "untied-4bit", "tied-4bit", "untied-fast4bit", "gemma2"])
def test_chunked_loss_equals_the_full_logits_loss(kind):
    model = tiny(kind)
    loss, note = chunked_loss_for(model)
    assert isinstance(loss, ChunkedLoss), note
    assert "chunked" in note and ("tied embedding" in note) == (kind.startswith("tied") or kind == "gemma2")
    loss.chunk = 7  # several chunks and a short last one
    args = batch()
    (full, n_full), g_full = nn.value_and_grad(model, token_loss)(model, *args)
    (chunked, n), g = nn.value_and_grad(model, loss)(model, *args)
    assert n.item() == n_full.item() == float(np.asarray(args[3]).sum())
    assert chunked.item() == pytest.approx(full.item(), rel=close(1e-4))
    reference = dict(tree_flatten(g_full))
    # lora_a and lora_b of o and down alone, q/k/v and gate/up each as one group (grouped_lora.py), each stacked
    # across both blocks (stacked_lora.py)
    assert len(reference) == 8
    for key, value in tree_flatten(g):
        scale = float(mx.abs(reference[key]).max().item())
        assert float(mx.abs(value - reference[key]).max().item()) <= close(1e-4) * scale, key


def test_a_head_it_cannot_reproduce_keeps_the_full_loss_and_says_so():
    class Scaled(nn.Module):  # a forward that does more to the logits than the loss knows of
        def __init__(self, inner):
            super().__init__()
            self.model, self.lm_head = inner.model, inner.lm_head

        def __call__(self, inputs):
            return self.lm_head(self.model(inputs)) * 0.5

    loss, note = chunked_loss_for(Scaled(tiny("untied")))
    assert loss is token_loss and note.startswith("loss: full logits") and "could not be split" in note
    loss, note = chunked_loss_for(nn.Linear(4, 4))
    assert loss is token_loss and "no separate body" in note


def test_the_chunked_loss_never_holds_the_whole_vocabulary():
    model = tiny("untied")
    loss, _ = chunked_loss_for(model)
    loss.chunk = 4
    args = batch()
    mx.eval(args)
    mx.reset_peak_memory()
    full_peak_base = mx.get_active_memory()
    mx.eval(nn.value_and_grad(model, loss)(model, *args))
    chunked_peak = mx.get_peak_memory() - full_peak_base
    mx.reset_peak_memory()
    mx.eval(nn.value_and_grad(model, token_loss)(model, *args))
    full_peak = mx.get_peak_memory() - full_peak_base
    assert chunked_peak < full_peak


def test_on_a_gpu_chunks_are_tall_unless_memory_comes_first(monkeypatch):
    """Tall chunks feed a GPU's matmul; with gradient checkpointing (memory first) they stay CPU-sized."""
    monkeypatch.setattr(mx, "default_device", lambda: mx.Device(mx.DeviceType.gpu))
    tall, small = chunk_positions(128_256), chunk_positions(128_256, memory_first=True)
    assert (tall, small) == (261, 32)
    loss, note = chunked_loss_for(tiny("tied"), memory_first=True)
    assert isinstance(loss, ChunkedLoss) and loss.chunk == CHUNK_ELEMENTS // 300  # its vocabulary: 300
    assert f"{loss.chunk} positions per chunk" in note


@pytest.mark.slow  # end-to-end: a real run of many steps
def test_gradient_checkpointing_gives_the_same_gradient_in_less_memory():
    from qlora_gui.core.model.loader import use_grad_checkpoint

    rng = np.random.default_rng(1)
    args = (
        mx.array(rng.integers(1, 300, size=(8, 256)).astype(np.int32)),
        mx.arange(0, 8 * 256, 2, dtype=mx.int32),
        mx.array(rng.integers(0, 300, size=1024).astype(np.int32)),
        mx.ones((1024,)),
    )

    def measure(model):
        loss, _ = chunked_loss_for(model)
        mx.eval(model.parameters(), args)
        mx.clear_cache()
        mx.reset_peak_memory()
        start = mx.get_active_memory()
        (value, _), grads = nn.value_and_grad(model, loss)(model, *args)
        mx.eval(value, grads)
        # in mlx-lm's names: checkpointed blocks hold their own adapters, unstacked (stacked_lora.py)
        return value.item(), mlx_layout(model, dict(tree_flatten(grads))), mx.get_peak_memory() - start

    plain = measure(tiny("untied", layers=8))
    model = tiny("untied", layers=8)
    assert use_grad_checkpoint(model) == 8
    checkpointed = measure(model)
    assert checkpointed[0] == pytest.approx(plain[0], rel=close(1e-6))
    for key, value in checkpointed[1].items():
        np.testing.assert_allclose(np.array(value), np.array(plain[1][key]), rtol=close(1e-4), atol=close(1e-6))
    assert checkpointed[2] < 0.6 * plain[2]  # 0.30-0.32 measured on the CPU
    assert type(tiny("untied").layers[0]).__call__ is not type(model.layers[0]).__call__  # other models untouched


def test_checkpointing_with_dropout_gives_the_gradient_of_the_loss_it_computes():
    """The recomputation in the backward must draw the forward's dropout masks: a finite difference of
    the loss (same seed, so the same masks) along the gradient matches the gradient's norm."""
    from qlora_gui.core.model.loader import use_grad_checkpoint

    model = tiny("untied")
    for layer in model.layers:
        for _, module in layer.named_modules():
            if hasattr(module, "lora_a"):
                module.dropout = nn.Dropout(0.5)
    assert use_grad_checkpoint(model) == 2
    rng = np.random.default_rng(2)
    args = (
        mx.array(rng.integers(1, 300, size=(2, 16)).astype(np.int32)),
        mx.arange(0, 32, dtype=mx.int32),
        mx.array(rng.integers(0, 300, size=32).astype(np.int32)),
        mx.ones((32,)),
    )
    mx.random.seed(5)
    _, grads = nn.value_and_grad(model, token_loss)(model, *args)
    key = "model.layers.0.self_attn.o_proj.lora_b"  # a layer with dropout (grouped ones have none)
    grad = dict(tree_flatten(grads))[key]
    norm = mx.sqrt(mx.square(grad).sum()).item()
    start = dict(tree_flatten(model.trainable_parameters()))[key]

    def loss_at(weight):
        model.load_weights([(key, weight)], strict=False)
        mx.random.seed(5)
        return token_loss(model, *args)[0].item()

    eps = 1e-3
    slope = (loss_at(start + eps * grad / norm) - loss_at(start - eps * grad / norm)) / (2 * eps)
    assert slope == pytest.approx(norm, rel=1e-2)
