"""Preference tuning: the pair formats, the DPO and ORPO losses, accumulation by pairs, and real runs."""

from __future__ import annotations

import math
import random

import mlx.core as mx
import mlx.optimizers as optim
import numpy as np
import pytest
from conftest import close, fixture_texts, mean_gradient, tiny_config, write_jsonl
from mlx.utils import tree_flatten, tree_map

from qlora_gui.core.after.evaluation import evaluate
from qlora_gui.core.config import TrainConfig
from qlora_gui.core.data.batching import make_batch
from qlora_gui.core.data.dataset import check_data
from qlora_gui.core.events import Failed, Finished, PreferenceReport, StepReport
from qlora_gui.core.inference.adapters import default_adapter
from qlora_gui.core.model.loader import add_adapters, load_base
from qlora_gui.core.runs.history import read_events
from qlora_gui.core.runs.run_folder import RunFolder
from qlora_gui.core.train.preference import PreferenceLoss, dpo_losses, orpo_losses, reference_logps
from qlora_gui.core.train.step import TrainStep
from qlora_gui.core.train.trainer import Trainer


def pairs(n: int, seed: int) -> list[dict]:
    """Prompts whose chosen answer ends with ' yes' and rejected with ' no', the rest the same."""
    rng = random.Random(seed)
    out = []
    for text in fixture_texts(n, seed=seed):
        words = text.split()[:6]
        body = " ".join(rng.sample(words, min(4, len(words))))
        out.append({"prompt": " ".join(words), "chosen": body + " yes", "rejected": body + " no"})
    return out


@pytest.fixture()
def pair_data(tmp_path):
    write_jsonl(tmp_path / "pairs" / "train.jsonl", pairs(120, 5))
    write_jsonl(tmp_path / "pairs" / "valid.jsonl", pairs(24, 6))
    return tmp_path / "pairs"


def config(demo_model, data, run_dir, **kw) -> TrainConfig:
    dpo = dict(train_mode="dpo", learning_rate=5e-3, iters=20, steps_per_report=5, steps_per_eval=10, sample_answers=0)
    return tiny_config(demo_model, data, run_dir, **{**dpo, **kw})


def log_sigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x))


def test_the_losses_equal_hand_computed_values():
    chosen, rejected = np.array([-3.0, -10.0], np.float32), np.array([-5.0, -4.0], np.float32)
    ref_c, ref_r = np.array([-4.0, -9.0], np.float32), np.array([-4.5, -4.5], np.float32)
    beta, smooth = 0.5, 0.1
    losses, rc, rr = dpo_losses(*map(mx.array, (chosen, rejected, ref_c, ref_r)), beta, smooth)
    for i in range(2):
        margin = beta * ((chosen[i] - ref_c[i]) - (rejected[i] - ref_r[i]))
        expected = -(1 - smooth) * log_sigmoid(margin) - smooth * log_sigmoid(-margin)
        assert losses[i].item() == pytest.approx(expected, rel=1e-5)
        assert rc[i].item() - rr[i].item() == pytest.approx(margin, rel=1e-5)
    n_c, n_r = np.array([3.0, 5.0], np.float32), np.array([2.0, 4.0], np.float32)
    losses, rc, rr = orpo_losses(*map(mx.array, (chosen, rejected, n_c, n_r)), beta)
    for i in range(2):
        mc, mr = chosen[i] / n_c[i], rejected[i] / n_r[i]
        odds = (mc - mr) - (math.log1p(-math.exp(mc)) - math.log1p(-math.exp(mr)))
        assert losses[i].item() == pytest.approx(-mc - beta * log_sigmoid(odds), rel=1e-5)
        assert (rc[i].item(), rr[i].item()) == pytest.approx((beta * mc, beta * mr), rel=1e-5)


def test_pair_rows_are_read_checked_and_encoded_answer_only(tmp_path, tokenizer):
    good = {"prompt": "Say it", "chosen": "yes", "rejected": "no"}
    chat = {
        "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
                     {"role": "user", "content": "again?"}],
        "chosen": [{"role": "assistant", "content": "sure"}],
        "rejected": "never",
    }  # fmt: skip
    path = write_jsonl(
        tmp_path / "p.jsonl",
        [good] * 6 + [{"prompt": "a", "chosen": "same", "rejected": "same"}, {"prompt": "b", "chosen": "x"}],
    )
    report = check_data(path, tokenizer, valid_fraction=0).report
    assert report.format == "preference"
    assert [str(p) for p in report.problems] == [
        f"{path}:7: 'chosen' and 'rejected' are the same answer: the pair teaches nothing; remove it",
        f"{path}:8: no 'rejected' answer; a preference row needs both 'chosen' and 'rejected'",
    ]
    path = write_jsonl(tmp_path / "c.jsonl", [chat] * 4)
    check = check_data(path, tokenizer, valid_fraction=0, max_seq_length=512)
    assert check.report.format == "chat_preference" and check.encoded is not None
    split = check.encoded["train"]
    assert split.pairs == 4 and len(split.tokens) == 8 and len(split.lengths) == 4
    # Only the final answer trains: the earlier assistant turn ("hello") in the prompt does not.
    trained = tokenizer.decode(split.tokens[0][split.trained[0]].tolist())
    assert "sure" in trained and "hello" not in trained and "again" not in trained
    assert "never" in tokenizer.decode(split.tokens[4][split.trained[4]].tolist())
    trl = {  # TRL's conversational form: the prompt as turns too
        "prompt": [{"role": "user", "content": "Say it"}],
        "chosen": [{"role": "assistant", "content": "yes"}],
        "rejected": [{"role": "assistant", "content": "no"}],
    }
    check = check_data(write_jsonl(tmp_path / "t.jsonl", [trl] * 4), tokenizer, valid_fraction=0)
    assert check.report.format == "preference" and check.report.problem_count == 0 and check.encoded is not None
    long = write_jsonl(tmp_path / "l.jsonl", [{"prompt": "word " * 60, "chosen": "yes", "rejected": "no"}] * 2)
    report = check_data(long, tokenizer, valid_fraction=0, max_seq_length=16).report
    assert report.problem_count == 2 and "the prompt fills max_seq_length=16" in str(report.problems[0])


def test_accumulated_pairs_equal_one_batch_of_them(demo_model, tokenizer, pair_data):
    split = check_data(pair_data / "train.jsonl", tokenizer, valid_fraction=0).encoded["train"]
    loaded = load_base(demo_model)
    model = loaded.model
    lora = {"rank": 4, "scale": 10.0, "dropout": 0.0}
    add_adapters(model, TrainConfig(model="m", data="d", num_layers=2, lora_parameters=lora))
    noise = lambda p: p + mx.random.normal(p.shape, key=mx.random.key(1)) * 0.05  # noqa: E731
    model.update(tree_map(noise, model.trainable_parameters()))  # adapters away from zero: the rewards differ
    split.reference = reference_logps(model, split, 4) - 0.5
    step = TrainStep(model, optim.Adam(1e-3), PreferenceLoss("dpo", 0.5))
    g_big, totals_big, _ = step.accumulate([make_batch(split, np.arange(6))])
    g_small, totals_small, _ = step.accumulate([make_batch(split, p) for p in np.split(np.arange(6), 3)])
    assert totals_big[1].item() == totals_small[1].item() == 6  # counted in pairs
    np.testing.assert_allclose(np.array(totals_small), np.array(totals_big), rtol=1e-4)
    g_big, g_small = (
        dict(tree_flatten(mean_gradient(g, t))) for g, t in ((g_big, totals_big), (g_small, totals_small))
    )
    for k in g_big:
        np.testing.assert_allclose(np.array(g_small[k]), np.array(g_big[k]), atol=close(1e-5), rtol=0)


@pytest.mark.slow  # end-to-end: a real run of many steps
@pytest.mark.parametrize("mode", ["dpo", "orpo"])
def test_a_short_run_learns_to_prefer_the_chosen_answers(tmp_path, demo_model, pair_data, mode):
    events = []
    # ORPO at DPO's 5e-3 ends these 20 steps on the edge of finding the chosen answers likelier (0.71 to 1.0 of
    # the pairs from float rounding alone, 0.75-0.83 at 4e-3, none at 30 steps): at 3e-3 it learns steadily.
    rate = {"learning_rate": 3e-3} if mode == "orpo" else {}
    result = Trainer(config(demo_model, pair_data, tmp_path / "run", train_mode=mode, **rate), events.append).run()
    assert isinstance(result, Finished), result
    valid = [e for e in events if isinstance(e, PreferenceReport) and e.split == "valid"]
    assert [e.step for e in valid] == [0, 10, 20] and valid[0].pairs == 24
    if mode == "dpo":  # the base is the reference: every reward is 0, a tie, and a tie is not a win
        assert valid[0].reward_accuracy == 0.0 and valid[0].reward_margin == 0.0
    assert valid[-1].reward_accuracy >= 0.9 and valid[-1].reward_margin > valid[0].reward_margin
    # the chosen answers became likelier against the rejected ones, on held-out prompts
    gap = [e.chosen_logp - e.rejected_logp for e in valid]
    assert gap[-1] > gap[0] + 0.5
    kept = [e for e in read_events(tmp_path / "run") if isinstance(e, PreferenceReport)]
    assert {e.split for e in kept} == {"train", "valid"}
    # evaluate: base against adapter on the held-out pairs
    result = evaluate(adapter=default_adapter(tmp_path / "run"))
    assert result.rows == 24 and result.adapter_accuracy >= 0.9 > result.base_accuracy
    assert "adapter  finds the chosen answer likelier in" in result.to_text()
    assert result.reward_accuracy is not None and result.reward_accuracy >= 0.9
    # the adapter is a plain mlx-lm adapter
    from mlx_lm import load

    model, tok = load(str(demo_model), adapter_path=str(RunFolder(tmp_path / "run").path))
    assert model(mx.array(tok.encode("show city"))[None]).shape[-1] > 0


@pytest.mark.slow  # end-to-end: a real run of many steps
def test_a_resumed_dpo_run_ends_where_a_straight_one_does(tmp_path, demo_model, pair_data):
    kw = dict(iters=8, grad_accumulation_steps=2, lora_parameters={"rank": 4, "scale": 10.0, "dropout": 0.1})
    assert isinstance(Trainer(config(demo_model, pair_data, tmp_path / "straight", **kw)).run(), Finished)
    cfg = config(demo_model, pair_data, tmp_path / "cut", **kw)
    holder = {}

    def stop_at_5(event):
        if isinstance(event, StepReport) and event.step == 5:
            holder["t"].stop()

    holder["t"] = Trainer(cfg, stop_at_5)
    first = holder["t"].run()
    assert isinstance(first, Finished) and first.stopped and first.step == 5
    cfg.resume = True
    assert isinstance(Trainer(cfg).run(), Finished)
    a = mx.load(str(RunFolder(tmp_path / "straight").adapters))
    b = mx.load(str(RunFolder(tmp_path / "cut").adapters))
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_allclose(np.array(a[k]), np.array(b[k]), atol=close(1e-5), rtol=1e-5)


def test_the_mode_and_the_rows_must_go_together_before_any_weights_load(tmp_path, demo_model, pair_data, text_data):
    sft = Trainer(config(demo_model, pair_data, tmp_path / "a", train_mode="sft")).run()
    assert isinstance(sft, Failed) and sft.exit_code == 2 and "pick DPO or ORPO" in sft.message
    dpo = Trainer(config(demo_model, text_data, tmp_path / "b")).run()
    assert isinstance(dpo, Failed) and dpo.exit_code == 2 and "DPO trains on preference pairs" in dpo.message


def test_the_answers_log_probabilities_need_no_full_logits(demo_model, tokenizer, pair_data):
    from qlora_gui.core.train.losses import ChunkedLoss, chunked_loss_for
    from qlora_gui.core.train.preference import sequence_logps

    split = check_data(pair_data / "train.jsonl", tokenizer, valid_fraction=0).encoded["train"]
    model = load_base(demo_model).model
    lora = {"rank": 4, "scale": 10.0, "dropout": 0.0}
    add_adapters(model, TrainConfig(model="m", data="d", num_layers=2, lora_parameters=lora))  # freezes the head
    head, _ = chunked_loss_for(model)
    assert isinstance(head, ChunkedLoss)
    arrays = make_batch(split, np.arange(4)).arrays()
    full, n_full = sequence_logps(model, *arrays)
    split_head, n_split = sequence_logps(model, *arrays, head=head)
    np.testing.assert_allclose(np.array(split_head), np.array(full), rtol=1e-4)
    assert np.array(n_full).tolist() == np.array(n_split).tolist()


@pytest.mark.slow  # end-to-end: a real run of many steps
def test_the_dpo_reference_is_measured_as_pairs_are_read_and_the_same_whenever(demo_model, tokenizer, pair_data):
    """A step measures its own pairs only; each pair is measured in a batch fixed by the data, so a run that
    first needs it in a later epoch (a resumed one) gets the very same numbers; adapters play no part."""
    from qlora_gui.core.data.batching import epoch_batches
    from qlora_gui.core.train.preference_mode import LazyReference

    data = check_data(pair_data / "train.jsonl", tokenizer, valid_fraction=0).encoded
    model = load_base(demo_model).model
    add_adapters(
        model,
        TrainConfig(model="m", data="d", num_layers=2, lora_parameters={"rank": 4, "scale": 10.0, "dropout": 0.0}),
    )
    model.update(tree_map(lambda p: p + 0.05, model.trainable_parameters()))  # adapters that change the answers
    loss = PreferenceLoss("dpo", 0.1)
    train = data["train"]
    straight = LazyReference(model, loss, 4, seed=0)
    straight.start(data)
    first = epoch_batches(train.lengths, 4, 0, 0)
    straight.ensure(train, first[:2])
    assert straight.measured == 8 and np.isnan(train.reference).sum() == 2 * (train.pairs - 8)
    base = load_base(demo_model).model
    expected = reference_logps(base, train, 4)
    done = ~np.isnan(train.reference)
    np.testing.assert_allclose(train.reference[done], expected[done], rtol=close(1e-5), atol=close(1e-4))
    straight.ensure(train, first)
    whole = train.reference.copy()
    assert not np.isnan(whole).any() and straight.measured == train.pairs
    resumed = LazyReference(model, loss, 4, seed=0)
    resumed.start(data)
    later = epoch_batches(train.lengths, 4, 0, 3)[:5]  # a run resumed in its fourth epoch
    resumed.ensure(train, later)
    pairs = np.concatenate(later)
    rows = np.concatenate([pairs, pairs + train.pairs])
    assert np.array_equal(train.reference[rows], whole[rows])


@pytest.mark.parametrize("mode", ["dpo", "orpo"])
def test_pairs_sharing_their_prompt_give_the_loss_and_gradient_of_whole_rows(demo_model, tokenizer, pair_data, mode):
    import mlx.nn as nn

    split = check_data(pair_data / "train.jsonl", tokenizer, valid_fraction=0).encoded["train"]
    split.reference = np.linspace(-40, -20, len(split.tokens)).astype(np.float32)
    model = load_base(demo_model).model
    lora = {"rank": 4, "scale": 10.0, "dropout": 0.0}
    add_adapters(model, TrainConfig(model="m", data="d", num_layers=2, lora_parameters=lora))
    model.update(tree_map(lambda p: p + 0.05, model.trainable_parameters()))  # adapters that change the answers
    loss = PreferenceLoss(mode, 0.1)
    loss.bind(model)
    assert loss.shares_prefix and "prompt computed once" in loss.description
    idx = np.array([3, 0, 7, 5])
    whole = make_batch(split, idx)
    split.share_prefix = True
    shared = make_batch(split, idx)
    assert shared.shared is not None and shared.shared.prompts.shape[1] > 0
    # the prefix runs once: fewer positions through the model than the two whole rows
    assert shared.shared.prompts.size + shared.shared.continuations.size < whole.inputs.size
    value_and_grad = nn.value_and_grad(model, loss)
    (a, pairs_a, stats_a), g_a = value_and_grad(model, *whole.arrays())
    (b, pairs_b, stats_b), g_b = value_and_grad(model, *shared.arrays())
    assert pairs_a.item() == pairs_b.item() == 4
    np.testing.assert_allclose(b.item(), a.item(), rtol=close(1e-5))
    np.testing.assert_allclose(np.array(stats_b), np.array(stats_a), rtol=close(1e-4), atol=close(1e-4))
    for (key, x), (_, y) in zip(tree_flatten(g_a), tree_flatten(g_b), strict=True):
        scale = float(mx.abs(x).max().item())
        assert float(mx.abs(x - y).max().item()) <= close(1e-4) * scale, key
