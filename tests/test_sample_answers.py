"""Sample answers during training: when they come, where they are kept, what they show, what they leave alone."""

from __future__ import annotations

import json

import mlx.core as mx
import numpy as np
import pytest
from conftest import fixture_texts, tiny_config, write_jsonl

from qlora_gui.cli import main
from qlora_gui.core.config import TrainConfig
from qlora_gui.core.errors import DataError
from qlora_gui.core.events import Failed, Finished, SampleAnswers
from qlora_gui.core.inference.adapters import default_adapter, load_with_adapter
from qlora_gui.core.inference.generation import format_prompt, stream_text
from qlora_gui.core.inference.sampling import SamplingSettings
from qlora_gui.core.runs.history import read_sample_answers
from qlora_gui.core.runs.run_folder import RunFolder
from qlora_gui.core.train.sample_answers import prompts_from_file
from qlora_gui.core.train.trainer import Trainer


def config(demo_model, data, run_dir, **kw) -> TrainConfig:
    short = dict(learning_rate=5e-3, iters=6, steps_per_report=3, steps_per_eval=2, sample_tokens=12)
    return tiny_config(demo_model, data, run_dir, **{**short, **kw})


def train(cfg):
    events = []
    result = Trainer(cfg, events.append).run()
    assert isinstance(result, Finished), result
    return [e for e in events if isinstance(e, SampleAnswers)]


@pytest.fixture()
def qa_data(tmp_path):
    texts = fixture_texts(50, seed=11)
    rows = [{"prompt": t, "completion": " ".join(t.split()[:3])} for t in texts]
    write_jsonl(tmp_path / "qa" / "train.jsonl", rows[:40])
    write_jsonl(tmp_path / "qa" / "valid.jsonl", rows[40:])
    return tmp_path / "qa", rows[40:]


def test_answers_come_at_the_start_each_validation_and_the_end_and_stay_in_metrics(tmp_path, demo_model, qa_data):
    data, valid_rows = qa_data
    samples = train(config(demo_model, data, tmp_path / "run"))
    assert [s.step for s in samples] == [0, 2, 4, 6]
    for s in samples:
        assert len(s.answers) == 2 and s.seconds > 0
        for a in s.answers:
            line = int(a["source"].rsplit(":", 1)[1])
            row = valid_rows[line - 1]  # the validation rows, with their own answers as references
            assert a["source"].startswith(str(data / "valid.jsonl"))
            assert (a["prompt"], a["reference"]) == (row["prompt"], row["completion"])
            assert 0 < a["tokens"] <= 12 and a["finish"] in ("stop", "length")
    # the same prompts every time: the timeline follows one prompt through the run
    assert len({tuple(a["source"] for a in s.answers) for s in samples}) == 1
    kept = read_sample_answers(tmp_path / "run")
    assert [k.step for k in kept] == [0, 2, 4, 6]
    assert [a["answer"] for a in kept[-1].answers] == [a["answer"] for a in samples[-1].answers]


def test_the_last_answers_are_what_the_saved_adapter_says(tmp_path, demo_model, qa_data):
    data, _ = qa_data
    samples = train(config(demo_model, data, tmp_path / "run", iters=4, steps_per_eval=100))
    assert [s.step for s in samples] == [0, 4]
    loaded = load_with_adapter(None, default_adapter(tmp_path / "run"))
    settings = SamplingSettings(temperature=0.0, max_tokens=12)
    for a in samples[-1].answers:
        text = format_prompt(loaded.tokenizer, a["prompt"], "", True)
        again = "".join(u.text for u in stream_text(loaded.model, loaded.tokenizer, text, settings))
        assert again == a["answer"]


@pytest.mark.slow  # end-to-end: a real run of many steps
def test_answering_leaves_training_exactly_as_it_was(tmp_path, demo_model, qa_data):
    # Dropout draws from the global generator: answering must not move it, nor the weights, nor the order.
    data, _ = qa_data
    lora = {"rank": 4, "scale": 10.0, "dropout": 0.2}
    with_answers = config(demo_model, data, tmp_path / "a", lora_parameters=lora, grad_checkpoint=True)
    assert len(train(with_answers)) == 4
    without = config(demo_model, data, tmp_path / "b", lora_parameters=lora, grad_checkpoint=True, sample_answers=0)
    assert train(without) == []
    a = mx.load(str(RunFolder(tmp_path / "a").adapters))
    b = mx.load(str(RunFolder(tmp_path / "b").adapters))
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_allclose(np.array(a[k]), np.array(b[k]), rtol=1e-5, atol=1e-6)


def test_a_prompts_file_takes_any_row_format_and_its_answers_as_references(tmp_path):
    path = write_jsonl(
        tmp_path / "prompts.jsonl",
        [
            {"prompt": "What is two and two?"},
            {"prompt": "Name a colour.", "completion": "Blue."},
            {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"}]},
            {"text": "table: t\nQ: how many?\nA: SELECT COUNT"},
            {"prompt": "never asked: beyond the limit"},
        ],
    )
    got = [(p.prompt, p.system, p.reference, p.line) for p in prompts_from_file(path, 4)]
    assert got == [
        ("What is two and two?", "", "", 1),
        ("Name a colour.", "", "Blue.", 2),
        ("Hi?", "Be brief.", "", 3),
        ("table: t\nQ: how many?\nA:", "", " SELECT COUNT", 4),
    ]


def test_a_bad_prompts_file_is_named_by_line_before_any_weights_load(tmp_path, demo_model, qa_data):
    bad = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "fine"}], ['{"question": "what?"}'])
    with pytest.raises(DataError) as e:
        prompts_from_file(bad, 4)
    assert e.value.lines[0].startswith(f"{bad}:2: not a sample prompt")
    data, _ = qa_data
    events = []
    result = Trainer(config(demo_model, data, tmp_path / "run", sample_prompts=str(bad)), events.append).run()
    assert isinstance(result, Failed) and result.exit_code == 2
    assert result.problems[0].startswith(f"{bad}:2:")
    assert not any(isinstance(e, SampleAnswers) for e in events)
    missing = Trainer(config(demo_model, data, tmp_path / "r2", sample_prompts=str(tmp_path / "nope.jsonl"))).run()
    assert isinstance(missing, Failed) and "does not exist" in missing.message


def test_the_command_line_asks_the_file_and_prints_the_answers(tmp_path, demo_model, qa_data, capsys):
    data, _ = qa_data
    prompts = write_jsonl(tmp_path / "ask.jsonl", [{"prompt": "alpha beta", "completion": "gamma"}])
    code = main(
        ["train", "--model", str(demo_model), "--data", str(data), "--adapter-path", str(tmp_path / "run"),
         "--iters", "2", "--num-layers", "1", "--sample-prompts", str(prompts), "--sample-tokens", "4"]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"sample [1] ({prompts}:1) prompt: alpha beta" in out and "sample [1] reference: gamma" in out
    assert out.count("sample answers in") == 2  # the start and the end (no validation in between)
    kept = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [e["step"] for e in kept if e["event"] == "samples"] == [0, 2]


def test_a_prompt_the_template_refuses_is_named_before_any_weights_load(tmp_path):
    from chat_families import build_family_tokenizer

    from qlora_gui.core.inference.samples import PromptSample
    from qlora_gui.core.model.model_files import load_tokenizer
    from qlora_gui.core.train.sample_answers import SampleAnswerer

    gemma = load_tokenizer(build_family_tokenizer("gemma-2", tmp_path / "gemma"))
    prompts = [PromptSample("hi", "", "", "p.jsonl", 1), PromptSample("hi", "be brief", "", "p.jsonl", 3)]
    with pytest.raises(DataError) as e:
        SampleAnswerer(gemma, prompts, True, 8)
    assert len(e.value.lines) == 1 and e.value.lines[0].startswith("p.jsonl:3: the model's chat template rejected")
    assert "system" in e.value.lines[0]


def test_the_timeline_starts_afresh_for_another_runs_prompts(qtbot):
    from qlora_gui.ui.widgets.sample_timeline import SampleTimeline

    timeline = SampleTimeline()
    qtbot.addWidget(timeline)
    first = [{"prompt": "a", "reference": "x", "answer": "x y", "tokens": 2, "finish": "stop", "source": "f:1"}]
    timeline.add(0, first, 0.1)
    timeline.add(5, first, 0.1)
    timeline.add(5, [{**first[0], "answer": "redone"}], 0.1)  # after a divergence: the step's answers replaced
    assert timeline.steps == [0, 5] and timeline.panels[0].answer.toPlainText() == "redone"
    assert timeline.panels[0].verdict.text() == "2 tokens · differs from the reference"
    timeline.add(0, [{**first[0], "prompt": "b"}], 0.1)
    assert timeline.steps == [0] and timeline.panels[0].prompt.toPlainText() == "b"


def test_the_sample_prompts_are_different_questions():
    from qlora_gui.core.data.intake import RawSplit
    from qlora_gui.core.train.sample_answers import prompts_from_split

    rows = [{"prompt": "same question", "chosen": f"a{i}", "rejected": f"b{i}"} for i in range(6)]
    rows.append({"prompt": "another question", "chosen": "c", "rejected": "d"})
    split = RawSplit("valid", "p.jsonl", "preference", rows, list(range(1, 8)))
    for seed in range(4):
        prompts = prompts_from_split(split, 2, seed)
        assert sorted(p.prompt for p in prompts) == ["another question", "same question"]
        assert [p.line for p in prompts] == sorted(p.line for p in prompts)  # in file order
