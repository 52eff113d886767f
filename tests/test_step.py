"""One step done right: labelled loss, masks, token-weighted accumulation, bad micro-batches kept out.

The step under test is the compiled one the trainer runs. Tolerances follow the backend: GPU float32
matmuls round differently from the CPU's (see `conftest.close`).
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
import pytest
from conftest import close, fixture_texts, mean_gradient, poisoned_loss, write_jsonl
from mlx.utils import tree_flatten, tree_map

from qlora_gui.core.config import TrainConfig
from qlora_gui.core.data.batching import Batch, make_batch, padded_width, steps_per_epoch
from qlora_gui.core.data.dataset import check_data
from qlora_gui.core.model.loader import add_adapters, load_base
from qlora_gui.core.train.losses import token_loss
from qlora_gui.core.train.step import TrainStep, evaluate_loss


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
    flat = np.flatnonzero(weights)
    loss_sum, ntoks = token_loss(
        FixedLogits(logits),
        None,
        mx.array(flat.astype(np.int32)),
        mx.array(targets.reshape(-1)[flat]),
        mx.array(weights.reshape(-1)[flat]),
    )
    log_softmax = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    picked = -np.take_along_axis(log_softmax, targets[..., None], -1)[..., 0]
    expected = (picked * weights).sum() / weights.sum()
    assert int(ntoks.item()) == 4
    assert loss_sum.item() / ntoks.item() == pytest.approx(expected, rel=1e-6)
    assert loss_sum.dtype == mx.float32


@pytest.fixture(scope="module")
def lora_model(demo_model):
    loaded = load_base(demo_model)
    add_adapters(
        loaded.model,
        TrainConfig(model="m", data="d", num_layers=2, lora_parameters={"rank": 4, "scale": 10.0, "dropout": 0.0}),
    )
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


def new_step(model, loss_fn=token_loss):
    optimizer = optim.Adam(learning_rate=1e-3)
    optimizer.init(model.trainable_parameters())
    return TrainStep(model, optimizer, loss_fn)


def test_padding_and_prompt_are_excluded(lora_model, encoded):
    model = lora_model.model
    # A padded batch of rows gives the same summed loss as each row alone, unpadded.
    idx = np.arange(4)
    batched, ntoks = token_loss(model, *make_batch(encoded, idx).arrays())
    alone = [token_loss(model, *make_batch(encoded, np.array([i])).arrays()) for i in idx]
    assert batched.item() == pytest.approx(sum(s.item() for s, _ in alone), rel=close(1e-5))
    assert ntoks.item() == sum(n.item() for _, n in alone) == sum(encoded.trained[i][1:].sum() for i in idx)
    # Only trained positions reach the loss: each targets the next token of a trained (not prompt) position.
    batch = make_batch(encoded, idx)
    width = batch.inputs.shape[1]
    real = batch.positions[batch.weights > 0]
    for p, target in zip(real, batch.targets[batch.weights > 0], strict=True):
        row, col = divmod(int(p), width)
        assert encoded.trained[idx[row]][col + 1] and encoded.tokens[idx[row]][col + 1] == target
    # The positions come in whole rows' worth, so a compiled step sees few shapes.
    assert len(batch.positions) % width == 0 and len(batch.positions) >= len(real)
    assert width % 8 == 0 and padded_width(9) == 9 and padded_width(10) == 17


def test_accumulated_micro_batches_equal_one_big_batch(lora_model, encoded):
    model = lora_model.model
    step = new_step(model)
    g_big, totals_big, _ = step.accumulate([make_batch(encoded, np.arange(8))])
    g_small, totals_small, infos = step.accumulate([make_batch(encoded, p) for p in np.split(np.arange(8), 4)])
    assert totals_small[1].item() == totals_big[1].item() and len(infos) == 4
    g_big = dict(tree_flatten(mean_gradient(g_big, totals_big)))
    g_small = dict(tree_flatten(mean_gradient(g_small, totals_small)))
    assert g_big.keys() == g_small.keys() and len(g_big) > 0
    for k in g_big:
        np.testing.assert_allclose(np.array(g_small[k]), np.array(g_big[k]), atol=close(1e-5), rtol=0)
    # The notebook's bug, summing micro-batch gradients without averaging, is visibly different.
    naive = None
    for part in np.split(np.arange(8), 4):
        g, totals, _ = step.accumulate([make_batch(encoded, part)])
        g = dict(tree_flatten(mean_gradient(g, totals)))
        naive = g if naive is None else {k: naive[k] + g[k] for k in g}
    key = next(iter(g_big))
    assert not np.allclose(np.array(naive[key]), np.array(g_big[key]), atol=1e-5)


def test_a_nan_micro_batch_never_reaches_the_sums(lora_model, encoded):
    batches = [make_batch(encoded, np.arange(0, 2)), make_batch(encoded, np.arange(2, 4))]
    step = new_step(lora_model.model, poisoned_loss([batches[1]], mx.nan))
    grads, totals, infos = step.accumulate(batches)
    clean, clean_totals, _ = new_step(lora_model.model).accumulate(batches[:1])
    flags = [int(i[0].item()) for i in infos]
    assert flags == [0, 1] and totals.tolist() == pytest.approx(clean_totals.tolist())
    for (_k, v), (_, ref) in zip(tree_flatten(grads), tree_flatten(clean), strict=True):
        np.testing.assert_array_equal(np.array(v), np.array(ref))


def test_a_step_reads_once_and_updates_only_with_tokens(lora_model, encoded):
    model = lora_model.model
    before = {k: np.array(v) for k, v in tree_flatten(model.trainable_parameters())}
    batches = [make_batch(encoded, np.arange(0, 2)), make_batch(encoded, np.arange(2, 4))]
    result = new_step(model, poisoned_loss(batches, mx.inf))(batches)  # every micro-batch bad: no update
    assert not result.updated and result.tokens == 0 and [m.reason for m in result.micro] == ["loss is not finite"] * 2
    result = new_step(model, poisoned_loss(batches[:1], mx.nan))(batches[:1])  # alone: no sum, the host skips it
    assert not result.updated and result.tokens == 0 and result.micro[0].reason == "loss is not finite"
    after = dict(tree_flatten(model.trainable_parameters()))
    assert all(np.array_equal(before[k], np.array(v)) for k, v in after.items())
    result = new_step(model)(batches)
    assert result.updated and result.tokens == sum(m.tokens for m in result.micro) > 0
    assert any(not np.array_equal(before[k], np.array(v)) for k, v in tree_flatten(model.trainable_parameters()))
    model.load_weights([(k, mx.array(v)) for k, v in before.items()], strict=False)


def test_evaluation_is_token_weighted(lora_model, encoded):
    batches = [make_batch(encoded, np.arange(0, 3)), make_batch(encoded, np.arange(3, 8))]
    loss, tokens = evaluate_loss(lora_model.model, batches)
    whole, n = token_loss(lora_model.model, *make_batch(encoded, np.arange(8)).arrays())
    assert tokens == int(n.item()) and loss == pytest.approx(whole.item() / n.item(), rel=close(1e-5))


def test_steps_per_epoch_counts_the_leftover():
    assert steps_per_epoch(10, 4) == 3 and steps_per_epoch(8, 4) == 2 and steps_per_epoch(1, 4) == 1
    assert isinstance(Batch, type)


def test_the_reported_rate_is_the_last_updates_rate(lora_model, encoded):
    model = lora_model.model
    before = {k: np.array(v) for k, v in tree_flatten(model.trainable_parameters())}
    optimizer = optim.Adam(learning_rate=optim.linear_schedule(1e-3, 1e-4, 4))
    step = TrainStep(model, optimizer, token_loss)
    batches = [make_batch(encoded, np.arange(0, 2))]
    for _ in range(3):
        step(batches)
        assert step.learning_rate() == pytest.approx(optimizer.learning_rate.item())
    assert step.updates == 3
    model.load_weights([(k, mx.array(v)) for k, v in before.items()], strict=False)


@pytest.mark.parametrize(
    "make",
    [
        lambda: optim.AdamW(learning_rate=optim.linear_schedule(1e-2, 1e-3, 5), weight_decay=0.1),
        lambda: optim.Adam(learning_rate=1e-2),
        lambda: optim.SGD(learning_rate=1e-2, momentum=0.9, weight_decay=0.01, nesterov=True),
        lambda: optim.Adam(learning_rate=1e-2, bias_correction=True),  # the generic `where` path
    ],
)
def test_the_in_graph_update_is_mlxs_update_or_nothing(make):
    """Kept: bit for bit what MLX's `update` makes (parameters, moments, step, rate); left out: nothing moves."""
    from qlora_gui.core.train.gated_update import gated_update

    def fresh():
        mx.random.seed(3)
        model = nn.Sequential(nn.Linear(8, 6), nn.Linear(6, 4))
        mx.eval(model.parameters())
        opt = make()
        opt.init(model.trainable_parameters())
        return model, opt

    grads = [mx.random.normal((6, 8)), mx.random.normal((6,)), mx.random.normal((4, 6)), mx.random.normal((4,))]
    tree = {"layers": [{"weight": grads[0], "bias": grads[1]}, {"weight": grads[2], "bias": grads[3]}]}
    (plain, plain_opt), (gated, gated_opt) = fresh(), fresh()
    for _ in range(3):
        plain_opt.update(plain, tree)
        gated_update(gated_opt, gated, tree, mx.array(True))
    for (k, a), (_, b) in zip(
        tree_flatten([plain.parameters(), plain_opt.state]),
        tree_flatten([gated.parameters(), gated_opt.state]),
        strict=True,
    ):
        assert np.array_equal(np.array(a), np.array(b)), k
    before = [np.array(v) for _, v in tree_flatten([gated.parameters(), gated_opt.state])]
    bad = tree_map(lambda g: g * mx.nan, tree)
    gated_update(gated_opt, gated, bad, mx.array(False))
    after = [np.array(v) for _, v in tree_flatten([gated.parameters(), gated_opt.state])]
    assert all(np.array_equal(a, b) for a, b in zip(before, after, strict=True))
