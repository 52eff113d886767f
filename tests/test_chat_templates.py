"""Completions-only masks under seven families' real chat templates: exactly the assistant turns are trained.

Each case renders a row with the family's own Jinja template, encodes it the way the trainer does and
reads back the text of every run of trained tokens. The expected runs are written out by hand: the
assistant's content as the template prints it, plus the end-of-turn marker, and nothing else.
"""

from __future__ import annotations

import json

import pytest
from chat_families import FAMILIES, build_family_tokenizer
from conftest import write_jsonl

from qlora_gui.cli import main
from qlora_gui.core.data.dataset import check_data
from qlora_gui.core.data.token_view import token_view
from qlora_gui.core.model.model_files import load_tokenizer

SYSTEM = "you are a helpful assistant that answers briefly"
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "get the weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    }
]
CALL = {"id": "call12345", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}
REASONING = "<think>\nthink step by step about the question\n</think>\n\n"


def _chat(*turns, **extra):
    return {"messages": [{"role": r, "content": c} for r, c in turns], **extra}


ROWS = {
    "prompt/completion": {"prompt": "what is the capital of France", "completion": "Paris is the capital"},
    "system+user+assistant": _chat(
        ("system", SYSTEM), ("user", "what is the capital of France"), ("assistant", "Paris is the capital")
    ),
    "multi-turn": _chat(
        ("user", "how many teams are in the city"),
        ("assistant", "the answer is four teams"),
        ("user", "and the score of the game"),
        ("assistant", "list the players of the team"),
    ),
    "tool call": {
        "messages": [
            {"role": "user", "content": "get the weather for Paris"},
            {"role": "assistant", "content": "", "tool_calls": [CALL]},
            {
                "role": "tool",
                "tool_call_id": "call12345",
                "name": "get_weather",
                "content": "it is 20 degrees in Paris",
            },
            {"role": "assistant", "content": "the weather is sunny and warm today"},
        ],
        "tools": TOOLS,
    },
    "multi-turn with reasoning": _chat(
        ("user", "how many teams are in the city"),
        ("assistant", "<think>\nthink step by step\n</think>\n\nthe answer is four teams"),
        ("user", "and the score of the game"),
        ("assistant", REASONING + "list the players of the team"),
    ),
}
ANSWERS = {
    "prompt/completion": ["Paris is the capital"],
    "system+user+assistant": ["Paris is the capital"],
    "multi-turn": ["the answer is four teams", "list the players of the team"],
    "tool call": ["<call>", "the weather is sunny and warm today"],
    "multi-turn with reasoning": [
        "<think>\nthink step by step\n</think>\n\nthe answer is four teams",
        REASONING + "list the players of the team",
    ],
}
TOOL_CALL_TEXT = {
    "llama-3.2": '{"name": "get_weather", "parameters": {"city": "Paris"}}',
    "qwen2.5": '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>',
    "qwen3": '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>',
    "mistral-v0.3": '[TOOL_CALLS] [{"name": "get_weather", "arguments": {"city": "Paris"}, "id": "call12345"}]',
}


def expected_runs(family: str, fmt: str) -> list[str]:
    fam = FAMILIES[family]
    answers = list(ANSWERS[fmt])
    if family == "qwen3":
        if fmt == "multi-turn with reasoning":
            answers[0] = "the answer is four teams"  # Qwen3 drops the reasoning of turns before the last query
        elif not answers[-1].startswith("<think>"):
            answers[-1] = "<think>\n\n</think>\n\n" + answers[-1]  # the final turn's empty think block
    if family == "phi-3" and fmt == "tool call":
        answers = answers[1:]  # Phi-3 prints no tool calls: that turn is empty, and nothing of it is trained
    return [(TOOL_CALL_TEXT[family] if a == "<call>" else fam.ans_prefix + a) + fam.marker for a in answers]


@pytest.fixture(scope="module")
def family_tokenizer(tmp_path_factory):
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = load_tokenizer(build_family_tokenizer(name, tmp_path_factory.mktemp(name)))
        return cache[name]

    return get


def trained_runs(view) -> list[str]:
    runs, current = [], None
    for i, piece in enumerate(view.pieces):
        if piece.trained and piece.kept and i > 0:
            current = (current or "") + piece.text
        elif current is not None:
            runs.append(current)
            current = None
    return runs + ([current] if current is not None else [])


def rejected(family: str, fmt: str) -> bool:
    fam = FAMILIES[family]
    return (fmt == "system+user+assistant" and not fam.system) or (fmt == "tool call" and family.startswith("gemma"))


@pytest.mark.parametrize("fmt", list(ROWS))
@pytest.mark.parametrize("family", list(FAMILIES))
def test_completions_only_trains_exactly_each_assistant_turn_and_its_marker(tmp_path, family_tokenizer, family, fmt):
    tok = family_tokenizer(family)
    path = write_jsonl(tmp_path / "d.jsonl", [ROWS[fmt]])
    result = check_data(path, tok, valid_fraction=0, mask_prompt=True)
    if rejected(family, fmt):
        [line] = result.report.problem_lines()
        assert line.startswith(f"{path}:1: the model's chat template rejected this row")
        rule = "no system role" if "system" in fmt else "alternate user/assistant"
        assert "Gemma's chat template" in line and rule in line
        return
    assert result.report.usable, result.report.problem_lines()
    view = token_view(result.raw, 1, tok, max_seq_length=4096, mask_prompt=True)
    assert trained_runs(view) == expected_runs(family, fmt)
    fam = FAMILIES[family]
    ids = [p.id for p in view.pieces]
    bos = tok.convert_tokens_to_ids(fam.bos) if fam.bos else None
    assert ids.count(bos) == (1 if bos is not None else 0) and (bos is None or ids[0] == bos)
    # The same masks reach the trainer's encoded split.
    enc = result.encoded["train"]
    assert enc.tokens[0].tolist() == ids and enc.trained[0].tolist() == [p.trained for p in view.pieces]


@pytest.mark.parametrize("family", list(FAMILIES))
def test_text_rows_get_bos_once_and_eos_once(tmp_path, family_tokenizer, family):
    tok, fam = family_tokenizer(family), FAMILIES[family]
    path = write_jsonl(tmp_path / "d.jsonl", [{"text": "the weather is sunny"}, {"text": f"{fam.eos}"}])
    enc = check_data(path, tok, valid_fraction=0).encoded["train"]
    eos = tok.eos_token_id
    for ids in enc.tokens:
        ids = ids.tolist()
        assert ids[-1] == eos and ids.count(eos) == 1
        if fam.adds_bos:
            assert ids[0] == tok.bos_token_id and ids.count(tok.bos_token_id) == 1
    assert all(m.all() for m in enc.trained)


def test_the_report_says_what_the_template_did(tmp_path, family_tokenizer):
    mistral = check_data(
        write_jsonl(tmp_path / "m.jsonl", [ROWS["system+user+assistant"]] * 2),
        family_tokenizer("mistral-v0.3"),
        valid_fraction=0,
        mask_prompt=True,
    ).report
    assert mistral.template == "the model's own chat template (Mistral)"
    assert any("leaves out the system turn of 2 train row(s) (first: line 1)" in w for w in mistral.warnings)
    assert any("1 train row(s) repeat an earlier row" in w for w in mistral.warnings)
    assert mistral.splits["train"].duplicate_rows == 1 and mistral.splits["train"].trained_share < 0.3

    qwen3 = check_data(
        write_jsonl(tmp_path / "q.jsonl", [ROWS["multi-turn with reasoning"]]),
        family_tokenizer("qwen3"),
        valid_fraction=0,
        mask_prompt=True,
    ).report
    assert any("leaves out the <think> reasoning of earlier assistant turns" in w for w in qwen3.warnings)

    phi = check_data(
        write_jsonl(tmp_path / "p.jsonl", [ROWS["tool call"]]),
        family_tokenizer("phi-3"),
        valid_fraction=0,
        mask_prompt=True,
    ).report
    assert any("an assistant turn that the chat template drops or rewrites (first: line 1)" in w for w in phi.warnings)
    assert any("leaves out the tool turn" in w for w in phi.warnings)


def test_a_long_answer_with_completions_only_is_no_sign_of_unmasked_prompts(tmp_path, family_tokenizer):
    rows = [{"prompt": "what", "completion": "the weather is sunny and warm today " * 4}]
    report = check_data(
        write_jsonl(tmp_path / "d.jsonl", rows), family_tokenizer("mistral-v0.3"), valid_fraction=0, mask_prompt=True
    ).report
    assert report.splits["train"].trained_share > 0.6  # the prompt is masked: no warning (issue 32)
    assert not any("completions only is on, yet" in w for w in report.warnings)


def test_check_data_show_prints_the_token_view(tmp_path, capsys):
    model = build_family_tokenizer("mistral-v0.3", tmp_path / "mistral")
    (model / "model.safetensors").write_bytes(b"")  # a model folder as check-data expects; weights are not read
    rows = [ROWS["system+user+assistant"], ROWS["multi-turn"]]
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    code = main(
        [
            "check-data",
            str(path),
            "--model",
            str(model),
            "--mask-prompt",
            "--valid-fraction",
            "0",
            "--show",
            "2",
            "--max-seq-length",
            "30",
            "--batch-size",
            "1",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "Template: the model's own chat template (Mistral)" in out
    assert f"{path}:2 (train): 30 tokens, " in out and "cut at max_seq_length=30" in out
    assert "[INST] how many teams are in the city[/INST][[ the answer is four teams</s>]][INST]" in out
    assert "<<cut: max_seq_length=30>>" in out and "\x1b[" not in out  # plain brackets when not a terminal
    assert "list the players of the team</s>" in out.split("<<cut")[-1]  # shown past the cut, not trained
    assert main(["check-data", str(path), "--model", str(model), "--show", "9", "--batch-size", "1"]) == 2
    assert "no row on line 9" in capsys.readouterr().err


def test_the_terminal_view_colours_trained_tokens(tmp_path, family_tokenizer):
    tok = family_tokenizer("qwen2.5")
    result = check_data(
        write_jsonl(tmp_path / "d.jsonl", [ROWS["prompt/completion"]]), tok, valid_fraction=0, mask_prompt=True
    )
    text = token_view(result.raw, 1, tok, max_seq_length=2048, mask_prompt=True).to_terminal(color=True)
    assert "\x1b[30;48;5;114m" in text and "\x1b[30;48;5;151m" in text and "\x1b[90m" in text
    assert "[[" not in text and json.dumps(ROWS["prompt/completion"]) not in text


def test_an_empty_answer_still_learns_to_end_the_turn(tmp_path, family_tokenizer):
    row = _chat(
        ("user", "how many teams are in the city"),
        ("assistant", ""),
        ("user", "and the score of the game"),
        ("assistant", "list the players of the team"),
    )
    tok = family_tokenizer("qwen2.5")
    result = check_data(write_jsonl(tmp_path / "d.jsonl", [row]), tok, valid_fraction=0, mask_prompt=True)
    view = token_view(result.raw, 1, tok, max_seq_length=4096, mask_prompt=True)
    assert trained_runs(view) == ["<|im_end|>", "list the players of the team<|im_end|>"]
    assert not any("drops or rewrites" in w for w in result.report.warnings)


def test_a_template_that_renders_differently_each_time_trains_nothing_it_cannot_place(tmp_path, demo_model):
    tok = load_tokenizer(demo_model)  # a fresh copy: the shared fixture keeps its template
    tok._tokenizer.chat_template = (
        "{% for m in messages %}<|{{ m['role'] }}|> {{ range(99999) | random }}\n"
        "{{ m['content'] }}</s>\n{% endfor %}{% if add_generation_prompt %}"
        "<|assistant|> 0\n{% endif %}"
    )
    row = _chat(("user", "what is the capital"), ("assistant", "select name from table"))
    result = check_data(write_jsonl(tmp_path / "d.jsonl", [row] * 4), tok, valid_fraction=0, mask_prompt=True)
    assert any(
        "4 train row(s) have an assistant turn that the chat template drops or rewrites" in w
        for w in result.report.warnings
    )
    assert not any(m[1:].any() for m in result.encoded["train"].trained)  # nothing is trained by guesswork
