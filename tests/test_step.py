"""One step done right: labelled loss, masks, token-weighted accumulation, bad micro-batches kept out."""

from __future__ import annotations

import math

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
from mlx.utils import tree_flatten

from conftest import fixture_texts, write_jsonl
from qlora_gui.core.batching import make_batch, padded_width, steps_per_epoch
from qlora_gui.core.config import TrainConfig
from qlora_gui.core.dataset import check_data
from qlora_gui.core.model import add_adapters, load_base
from qlora_gui.core.step import GradientAccumulator, evaluate_loss, mean_gradient, token_loss


class FixedLogits(nn.Module):
    def __init__(self, logits: np.ndarray):
        super().__init__()
        self._logits = mx.array(logits)

    def __call__(self, inputs):
        return self._logits


def test_loss_matches_a_hand_computed_reference():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 3, 5)).astype(np.float32)
    targets = np.array([[1, 4, 0], [2, 2, 3]], dtype=np.int32)
    weights = np.array([[1, 1, 0], [0, 1, 1]], dtype=np.float32)  # 0: padding or prompt
    loss_sum, ntoks = token_loss(FixedLogits(logits), None, mx.array(targets), mx.array(weights))
    log_softmax = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    picked = -np.take_along_axis(log_softmax, targets[..., None], -1)[..., 0]
    expected = (picked * weights).sum() / weights.sum()
    assert int(ntoks.item()) == 4
    assert loss_sum.item() / ntoks.item() == pytest.approx(expected, rel=1e-6)
    assert loss_sum.dtype == mx.float32


@pytest.fixture(scope="module")
def lora_model(demo_model):
    loaded = load_base(demo_model)
    add_adapters(loaded.model, TrainConfig(model="m", data="d", num_layers=2,
                                           lora_parameters={"rank": 4, "scale": 10.0, "dropout": 0.0}))
    # Give lora_b non-zero values so every adapter weight has a gradient.
    params = tree_flatten(loaded.model.trainable_parameters())
    loaded.model.load_weights([(k, mx.random.normal(v.shape) * 0.05) for k, v in params], strict=False)
    return loaded


@pytest.fixture(scope="module")
def encoded(tmp_path_factory, lora_model):
    path = tmp_path_factory.mktemp("d") / "pc.jsonl"
    texts = fixture_texts(16, seed=5)
    write_jsonl(path, [{"prompt": t, "completion": t.upper()} for t in texts])
    result = check_data(path, lora_model.tokenizer, mask_prompt=True, valid_fraction=0)
    return result.encoded["train"]


def test_padding_and_prompt_are_excluded(lora_model, encoded):
    model = lora_model.model
    # A padded batch of rows gives the same summed loss as each row alone, unpadded.
    idx = np.arange(4)
    batched, ntoks = token_loss(model, *(mx.array(a) for a in make_batch(encoded, idx)))
    alone = [token_loss(model, *(mx.array(a) for a in make_batch(encoded, np.array([i])))) for i in idx]
    assert batched.item() == pytest.approx(sum(s.item() for s, _ in alone), rel=1e-5)
    assert ntoks.item() == sum(n.item() for _, n in alone) == sum(encoded.trained[i][1:].sum() for i in idx)
    # The weights are zero on every prompt and padding position.
    inputs, targets, weights = make_batch(encoded, idx)
    for row, i in enumerate(idx):
        n = len(encoded.tokens[i])
        assert weights[row, : n - 1].tolist() == encoded.trained[i][1:].astype(np.float32).tolist()
        assert not weights[row, n - 1:].any()
    assert inputs.shape[1] % 8 == 0 and padded_width(9) == 9 and padded_width(10) == 17


def test_accumulated_micro_batches_equal_one_big_batch(lora_model, encoded):
    model = lora_model.model
    big = GradientAccumulator(model)
    assert big.add(*(mx.array(a) for a in make_batch(encoded, np.arange(8)))).ok
    small = GradientAccumulator(model)
    for part in np.split(np.arange(8), 4):
        assert small.add(*(mx.array(a) for a in make_batch(encoded, part))).ok
    assert small.tokens == big.tokens and small.micro_batches == 4
    g_big = dict(tree_flatten(mean_gradient(big.grads, big.tokens)))
    g_small = dict(tree_flatten(mean_gradient(small.grads, small.tokens)))
    assert g_big.keys() == g_small.keys() and len(g_big) > 0
    for k in g_big:
        np.testing.assert_allclose(np.array(g_small[k]), np.array(g_big[k]), atol=1e-5, rtol=0)
    # The notebook's bug, summing micro-batch gradients without averaging, is visibly different.
    naive = None
    for part in np.split(np.arange(8), 4):
        one = GradientAccumulator(model)
        one.add(*(mx.array(a) for a in make_batch(encoded, part)))
        g = dict(tree_flatten(mean_gradient(one.grads, one.tokens)))
        naive = g if naive is None else {k: naive[k] + g[k] for k in g}
    key = next(iter(g_big))
    assert not np.allclose(np.array(naive[key]), np.array(g_big[key]), atol=1e-5)


def test_a_nan_micro_batch_never_reaches_the_accumulator(lora_model, encoded):
    calls = []

    def nan_on_second(model, inputs, targets, weights):
        s, n = token_loss(model, inputs, targets, weights)
        calls.append(1)
        return (s * math.nan if len(calls) == 2 else s), n

    acc = GradientAccumulator(lora_model.model, nan_on_second)
    first = acc.add(*(mx.array(a) for a in make_batch(encoded, np.arange(2))))
    snapshot = {k: np.array(v) for k, v in tree_flatten(acc.grads)}
    second = acc.add(*(mx.array(a) for a in make_batch(encoded, np.arange(2, 4))))
    assert first.ok and not second.ok and "not finite" in second.reason
    assert acc.micro_batches == 1 and acc.tokens == first.tokens
    for k, v in tree_flatten(acc.grads):
        np.testing.assert_array_equal(np.array(v), snapshot[k])


def test_evaluation_is_token_weighted(lora_model, encoded):
    batches = [make_batch(encoded, np.arange(0, 3)), make_batch(encoded, np.arange(3, 8))]
    loss, tokens = evaluate_loss(lora_model.model, batches)
    whole, n = token_loss(lora_model.model, *(mx.array(a) for a in make_batch(encoded, np.arange(8))))
    assert tokens == int(n.item()) and loss == pytest.approx(whole.item() / n.item(), rel=1e-5)


def test_steps_per_epoch_counts_the_leftover():
    assert steps_per_epoch(10, 4) == 3 and steps_per_epoch(8, 4) == 2 and steps_per_epoch(1, 4) == 1
