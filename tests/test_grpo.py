"""GRPO: prompt rows, rewards (built-in and the user's), a run that learns from an exact reward, exact resume."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest
from conftest import fixture_texts, mean_gradient, tiny_config, write_jsonl

from qlora_gui.cli import main
from qlora_gui.core.data.dataset import check_data
from qlora_gui.core.events import Failed, Finished, GroupCompletions, RewardReport, SampleAnswers, StepReport
from qlora_gui.core.runs.history import read_events
from qlora_gui.core.runs.run_folder import RunFolder
from qlora_gui.core.train.grpo import group_advantages
from qlora_gui.core.train.rewards import RewardOptions, builtin_rewards, choose_rewards
from qlora_gui.core.train.trainer import Trainer


def likeliest_word(demo_model, rows: list[dict], temperature: float) -> str:
    """The word the base most often starts its answer with at this temperature: an exact reward for it pays
    now and then at first (a few percent), so a handful of steps can learn it."""
    from mlx_lm import load

    from qlora_gui.core.data.chat_template import render_chat
    from qlora_gui.core.data.encode import encode_chat_text
    from qlora_gui.core.data.prompt_rows import PROMPTS

    model, tok = load(str(demo_model))
    probs = 0
    for row in rows:
        ids = encode_chat_text(tok, render_chat(tok, PROMPTS.as_messages(row), add_generation_prompt=True))
        probs = probs + mx.softmax(model(mx.array(ids)[None])[0, -1].astype(mx.float32) / temperature)
    for i in np.argsort(-np.array(probs)):
        word = tok.decode([int(i)])
        if word.strip().isalpha():
            return word.strip()
    raise AssertionError("no word")


@pytest.fixture(scope="module")
def word_task(tmp_path_factory, demo_model):
    """Prompts of random words; the answer is one word, the same for every prompt."""
    texts = fixture_texts(40, seed=3)
    rows = [{"prompt": t, "system": "Answer in one word."} for t in texts]
    word = likeliest_word(demo_model, rows[:8], 0.3)
    rows = [{**row, "answer": word} for row in rows]
    folder = tmp_path_factory.mktemp("grpo") / "words"
    write_jsonl(folder / "train.jsonl", rows[:32])
    write_jsonl(folder / "valid.jsonl", rows[32:])
    return folder, word


@pytest.fixture(scope="module")
def learnt(tmp_path_factory, demo_model, word_task):
    """A short GRPO run on the word task: its folder (in a runs folder of its own), events and result."""
    data, word = word_task
    events = []
    run = tmp_path_factory.mktemp("runs") / "grpo-run"
    result = Trainer(grpo_config(demo_model, data, run, sample_answers=1, sample_tokens=1), events.append).run()
    return run, events, result, word


def grpo_config(demo_model, data, run_dir, **kw):
    grpo = dict(
        train_mode="grpo", iters=4, batch_size=4, group_size=16, max_completion_length=1, temperature=0.3,
        learning_rate=1e-3, warmup_steps=0, beta=0.0, reward_functions="exact", steps_per_report=1, micro_batch_size=32,
        steps_per_eval=1000, val_batches=2, sample_answers=0,
    )  # fmt: skip
    return tiny_config(demo_model, data, run_dir, **{**grpo, **kw})


def test_prompt_rows_load_as_mlx_lm_lora_writes_them_and_problems_name_their_line(tmp_path, tokenizer):
    good = [
        {"prompt": "What is 2+2?", "answer": "4", "system": "Be brief."},
        {"prompt": [{"role": "user", "content": "Say yes"}]},
        {"prompt": "No answer at all"},
        {"prompt": "A number", "answer": 7},
    ]
    check = check_data(write_jsonl(tmp_path / "good.jsonl", good), tokenizer, valid_fraction=0.0)
    assert check.report.usable and check.report.format == "prompts", check.report.to_text()
    assert check.report.splits["train"].preview[0] == {"prompt": "What is 2+2?", "answer": "4", "system": "Be brief."}
    assert check.encoded is not None
    first = tokenizer.decode(check.encoded["train"].tokens[0].tolist())
    assert first.endswith("<|assistant|>\n") and "Be brief." in first  # the generation prompt, the system turn
    bad = [*good, {"prompt": ""}, {"prompt": [{"role": "assistant", "content": "hi"}]}, {"prompt": "x", "answer": []}]
    report = check_data(write_jsonl(tmp_path / "bad.jsonl", bad), valid_fraction=0.0).report
    lines = report.problem_lines()
    assert report.problem_count == 3 and all(str(tmp_path / "bad.jsonl") in line for line in lines)
    assert [line.split(":")[1] for line in lines] == ["5", "6", "7"]
    assert "'prompt' is empty" in lines[0] and "must be the user's" in lines[1] and "'answer' must be" in lines[2]


def test_the_builtin_rewards_and_their_weights():
    b = builtin_rewards(RewardOptions(r"^<answer>.*</answer>$", 2, 5))
    completions = ["  The  ANSWER is 42 ", "42", "<answer>x</answer>", '```json\n{"a": 1}\n```', "1,000.5"]
    answers = ["the answer is 42", "42.0", None, None, "1000.5"]
    call = lambda name: b[name]([""] * 5, completions, answers)  # noqa: E731
    assert call("exact") == [1, 0, 0, 0, 0]
    assert call("contains") == [1, 0, 0, 0, 0]
    assert call("format") == [0, 0, 1, 0, 0]
    assert call("numeric") == [1, 1, 0, 0, 1]
    assert call("json") == [0, 1, 0, 1, 0]
    assert call("length") == [0, 1, 0, 0, 0]
    options = RewardOptions("x", 0, 10)
    weighted = choose_rewards("exact, json", "[2, 0.5]", "", options)
    assert [(r.name, r.weight) for r in weighted] == [("exact", 2.0), ("json", 0.5)]
    with pytest.raises(Exception, match="2 weight"):
        choose_rewards("exact", "1,2", "", options)
    with pytest.raises(Exception, match="unknown reward function"):
        choose_rewards("nope", "", "", options)
    # a reward that fails mid-run counts 0 for that group, with a warning naming it; the others still count
    from qlora_gui.core.train.rewards import Reward, RewardSet

    def flaky(prompts, completions, answers):
        raise KeyError("oops")

    rewards = RewardSet([Reward("exact", b["exact"], 1.0, "built-in"), Reward("flaky", flaky, 2.0, "f.py:3")])
    totals, each, warnings = rewards.score(["p", "p"], ["Yes", "no"], ["yes", "yes"])
    assert totals == [1.0, 0.0] and each["flaky"] == [0.0, 0.0]
    assert warnings == ["reward function 'flaky' (f.py:3) failed (KeyError: 'oops'); it counts 0 for this group"]
    # advantages: against the group's mean, scaled by its spread (Dr. GRPO: not scaled); a flat group gives 0
    adv = group_advantages(np.array([[1.0, 0.0, 0.0, 1.0], [0.5, 0.5, 0.5, 0.5]]))
    assert adv[0] == pytest.approx([1, -1, -1, 1], abs=1e-3) and not adv[1].any()
    assert group_advantages(np.array([[2.0, 0.0]]), scale_by_spread=False)[0].tolist() == [1.0, -1.0]


def test_a_bad_reward_file_is_reported_by_line_before_any_weights_load(tmp_path, demo_model, word_task, monkeypatch):
    data, _ = word_task

    def no_weights(*a, **k):
        raise AssertionError("weights loaded before the rewards were checked")

    monkeypatch.setattr("qlora_gui.core.train.training_model.load_base", no_weights)
    cases = {
        "raises": ("def ok(prompts, completions, answers):\n    return [1.0] * len(completions)\n\n"
                   "def broken(prompts, completions, answers):\n    x = 1\n    return [1 / 0 for c in completions]\n",
                   ":6: reward function 'broken' failed on the first rows: ZeroDivisionError"),
        "short": ("def short(prompts, completions, answers):\n    return [1.0]\n",
                  ":1: reward function 'short' returned 1 value(s) for 2 completion(s)"),
        "syntax": ("def r(prompts, completions, answers)\n    return []\n",
                   ":1: the reward functions file does not parse"),
    }  # fmt: skip
    for name, (source, expected) in cases.items():
        file = tmp_path / f"{name}.py"
        file.write_text(source)
        cfg = grpo_config(demo_model, data, tmp_path / name, reward_functions="", reward_functions_file=str(file))
        result = Trainer(cfg).run()
        assert isinstance(result, Failed) and result.exit_code == 2, result
        assert f"{file}{expected}" in result.message, result.message
    # the command line says the same, with exit code 2
    file = tmp_path / "raises.py"
    args = ["train", "--model", str(demo_model), "--data", str(data), "--adapter-path", str(tmp_path / "cli")]
    args += ["--train-mode", "grpo", "--reward-functions-file", str(file), "--reward-functions", "ok,broken"]
    assert main(args) == 2


def test_an_exact_reward_is_learnt_and_the_run_keeps_its_rewards_and_answers(learnt):
    run, events, result, word = learnt
    assert isinstance(result, Finished), result
    held_out = [e for e in events if isinstance(e, RewardReport) and e.split == "valid"]
    assert [e.step for e in held_out] == [0, 4] and held_out[0].groups == 8
    assert held_out[0].reward_mean < 0.3 <= 0.8 <= held_out[-1].reward_mean, [e.reward_mean for e in held_out]
    train = [e for e in events if isinstance(e, RewardReport) and e.split == "train"]
    assert len(train) == 4 and train[0].functions.keys() == {"exact"} and train[0].completion_length == 1
    assert train[-1].zero_spread_share > train[0].zero_spread_share - 1e-9  # the groups agree as it learns
    groups = [e for e in events if isinstance(e, GroupCompletions)]
    assert len(groups) == 4 and len(groups[-1].completions) == 16 and groups[-1].reference == word
    best = max(groups[-1].completions, key=lambda c: c["reward"])
    assert best["text"].strip() == word and best["rewards"] == {"exact": 1.0}
    samples = [e for e in events if isinstance(e, SampleAnswers)]  # the greedy answers, scored as well
    assert [e.step for e in samples] == [0, 4] and samples[-1].answers[0]["reward"] == 1.0
    kept = {e.kind for e in read_events(run)}
    assert {"rewards", "completions"} <= kept
    assert result.best_val_loss == pytest.approx(-held_out[-1].reward_mean)
    # Evaluate: the base's and the adapter's mean reward on the held-out prompts, with the run's rewards
    from qlora_gui.core.after.evaluation import evaluate
    from qlora_gui.core.inference.adapters import default_adapter

    evaluated = evaluate(adapter=default_adapter(run))
    assert evaluated.rows == 8 and evaluated.tokens == 8 * 16 and evaluated.adapter_loss is None
    assert evaluated.base_reward == pytest.approx(held_out[0].reward_mean)  # the same draws as step 0's
    assert evaluated.adapter_reward >= 0.8 and "mean reward" in evaluated.to_text()


def test_a_killed_grpo_run_resumes_to_the_same_bits(tmp_path, demo_model, word_task):
    """Sampling, rewards, the KL to the base and the update: a run killed after its step-1 checkpoint and
    resumed ends exactly where a straight one does."""
    data, _ = word_task
    kw = dict(iters=2, save_every=1, max_completion_length=3, temperature=1.0, beta=0.1, group_size=4,
              reward_functions="contains,length", reward_weights="1,0.5", learning_rate=5e-3, val_batches=1,
              importance_sampling_level="sequence", grad_accumulation_steps=2, batch_size=2)  # fmt: skip
    straight = Trainer(grpo_config(demo_model, data, tmp_path / "straight", **kw)).run()
    assert isinstance(straight, Finished), straight

    def killed_at_2(event):
        if isinstance(event, StepReport) and event.step == 2:
            raise KeyboardInterrupt  # not caught as a failure: the process ends here, as with kill -9

    cfg = grpo_config(demo_model, data, tmp_path / "cut", **kw)
    with pytest.raises(KeyboardInterrupt):
        Trainer(cfg, killed_at_2).run()
    cfg.resume = True
    events = []
    assert isinstance(Trainer(cfg, events.append).run(), Finished)
    assert next(e for e in events if isinstance(e, StepReport)).step == 2
    kl = [e.kl for e in events if isinstance(e, RewardReport) and e.split == "train"]
    assert all(k is not None and k >= 0 for k in kl)
    a = mx.load(str(RunFolder(tmp_path / "straight").adapters))
    b = mx.load(str(RunFolder(tmp_path / "cut").adapters))
    assert a.keys() == b.keys()
    for k in a:
        assert np.array_equal(np.array(a[k]), np.array(b[k])), k


def test_the_train_tab_and_the_runs_tab_show_the_rewards_and_the_answers(qtbot, learnt):
    from qlora_gui.core.events import RunStarted
    from qlora_gui.ui.views.runs_view import RunsView
    from qlora_gui.ui.views.training_view import TrainingView
    from qlora_gui.ui.widgets.completions_view import BEST_COLOUR, WORST_COLOUR

    run, events, result, _ = learnt
    view = TrainingView()
    qtbot.addWidget(view)
    view.show()
    started = next(e for e in events if isinstance(e, RunStarted))
    view.on_started(started)
    assert view.rewards.isVisible() and not view.preference.isVisible()
    assert view.bottom.isTabVisible(view.bottom.indexOf(view.completions))
    for e in events:
        if isinstance(e, RewardReport):
            view.on_rewards(e)
        elif isinstance(e, GroupCompletions):
            view.on_completions(e)
    train_steps, means = view.rewards.points[("train", "reward_mean")]
    assert train_steps == [1, 2, 3, 4] and means == [e.reward_mean for e in events if isinstance(e, RewardReport)
                                                     and e.split == "train"]  # fmt: skip
    assert view.rewards.points[("valid", "reward_mean")][0] == [0, 4]
    assert "mean reward" in view.log.toPlainText()
    # the completions view: the first report's group (some answers paid, most did not), best and worst marked
    view.completions.slider.setValue(0)
    table = view.completions.table
    assert table.rowCount() == 16 and view.completions.step_label.text() == "1"
    marks = view.completions.best_and_worst()
    assert marks is not None
    best, worst = marks
    assert float(table.item(best, 0).text()) == 1.0 and float(table.item(worst, 0).text()) == 0.0
    assert table.item(best, 0).background().color() == BEST_COLOUR
    assert table.item(worst, 0).background().color() == WORST_COLOUR
    view.on_finished(result)
    assert "held-out mean reward" in view.status.text()
    # the Runs tab replays the run from its metrics.jsonl
    runs = RunsView(run.parent)
    qtbot.addWidget(runs)
    runs.select_runs([run.name])
    assert runs.figures.isTabVisible(runs.figures.indexOf(runs.rewards))
    assert runs.rewards.points[("train", "reward_mean")] == view.rewards.points[("train", "reward_mean")]
    assert len(runs.completions.groups) == 4 and runs.completions.table.rowCount() == 16


def test_the_preflight_measures_a_grpo_step_with_its_sampling(tmp_path, demo_model, word_task):
    from qlora_gui.core.train.preflight import preflight

    data, _ = word_task
    cfg = grpo_config(demo_model, data, tmp_path / "pre", batch_size=2, group_size=4, max_completion_length=6)
    result = preflight(cfg)
    chosen = result.chosen
    assert chosen is not None and chosen.seconds_per_step > 0 and result.run_seconds > 0
    assert chosen.tokens_per_sec == pytest.approx(2 * 4 * 6 / chosen.seconds_per_step)


@pytest.mark.parametrize("loss_type", ["grpo", "bnpo", "dr_grpo"])
def test_answers_split_over_passes_give_the_step_of_one_batch(demo_model, tokenizer, loss_type):
    """Each loss variant sums over answers (or tokens) and divides once, so passes of a few answers add up to
    exactly the gradient of one batch holding them all; with KL, and with sequence-level ratios."""
    import mlx.optimizers as optim
    from mlx.utils import tree_flatten, tree_map

    from qlora_gui.core.config import TrainConfig
    from qlora_gui.core.model.loader import add_adapters, load_base
    from qlora_gui.core.train.grpo import GrpoLoss
    from qlora_gui.core.train.grpo_mode import answers_batch, base_logps
    from qlora_gui.core.train.step import TrainStep

    model = load_base(demo_model).model
    add_adapters(
        model,
        TrainConfig(model="m", data="d", num_layers=2, lora_parameters={"rank": 4, "scale": 10.0, "dropout": 0.0}),
    )
    noise = lambda p: p + mx.random.normal(p.shape, key=mx.random.key(1)) * 0.05  # noqa: E731
    model.update(tree_map(noise, model.trainable_parameters()))  # away from the base: the KL is not zero
    rng = np.random.default_rng(0)
    prompts = [rng.integers(10, 300, n).astype(np.int32) for n in (5, 5, 9, 9, 7, 7)]
    answers = [rng.integers(10, 300, n).astype(np.int32) for n in (3, 1, 4, 2, 4, 3)]
    adv = np.array([1.0, -1.0, 0.5, -0.5, 2.0, -2.0], np.float32)
    loss = GrpoLoss(0.2, 0.2, 0.28, loss_type, loss_type == "grpo", 4)

    def batch(part):
        b = answers_batch([prompts[i] for i in part], [answers[i] for i in part], adv[part])
        b.reference = base_logps(model, b, loss)
        return b

    step = TrainStep(model, optim.Adam(1e-3), loss)
    g_big, totals_big, _ = step.accumulate([batch(np.arange(6))])
    g_small, totals_small, _ = step.accumulate([batch(p) for p in np.split(np.arange(6), 3)])
    np.testing.assert_allclose(np.array(totals_small), np.array(totals_big), rtol=1e-4, atol=1e-6)
    assert totals_big[2].item() == sum(len(a) for a in answers) and totals_big[3].item() > 0  # tokens, KL sum
    g_big, g_small = (
        dict(tree_flatten(mean_gradient(g, t))) for g, t in ((g_big, totals_big), (g_small, totals_small))
    )
    for k in g_big:
        np.testing.assert_allclose(np.array(g_small[k]), np.array(g_big[k]), atol=1e-5, rtol=0)


def test_the_sample_prompts_that_ship_train_with_a_builtin_reward(tmp_path, demo_model):
    from qlora_gui.core.resources import sample_prompts_path

    report = check_data(sample_prompts_path()).report
    assert report.usable and report.format == "prompts" and report.splits["train"].rows > 200
    events: list = []
    cfg = grpo_config(
        demo_model, str(sample_prompts_path()), tmp_path / "run", iters=1, batch_size=2, group_size=2,
        max_completion_length=4, reward_functions="contains,exact", reward_weights="1,1", val_batches=1,
    )  # fmt: skip
    result = Trainer(cfg, events.append).run()
    assert isinstance(result, Finished) and result.step == 1, result
    rewards = [e for e in events if isinstance(e, RewardReport) and e.split == "train"]
    assert rewards and set(rewards[0].functions) == {"contains", "exact"}
