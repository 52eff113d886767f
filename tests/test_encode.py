"""Tokenizing rows: chat templates, the no-template fallback, completions-only masks, truncation."""

from __future__ import annotations

import numpy as np
from conftest import write_jsonl

from qlora_gui.core.data.chat_template import render_chat
from qlora_gui.core.data.dataset import check_data
from qlora_gui.core.model.model_files import load_tokenizer


def encode(tokenizer, path, **kw):
    result = check_data(path, tokenizer, valid_fraction=0, **kw)
    assert result.report.usable, result.report.problem_lines()
    return result


def test_completions_only_masks_exactly_the_prompt(tmp_path, tokenizer):
    row = {"prompt": "how many teams in the city", "completion": "select count team"}
    enc = encode(tokenizer, write_jsonl(tmp_path / "d.jsonl", [row]), mask_prompt=True).encoded["train"]
    tokens, trained = enc.tokens[0], enc.trained[0]
    turns = [{"role": "user", "content": row["prompt"]}]
    prompt_ids = tokenizer.encode(render_chat(tokenizer, turns, add_generation_prompt=True), add_special_tokens=False)
    full_ids = tokenizer.encode(
        render_chat(tokenizer, turns + [{"role": "assistant", "content": row["completion"]}]), add_special_tokens=False
    )
    assert tokens.tolist() == full_ids
    assert tokens[: len(prompt_ids)].tolist() == prompt_ids
    assert not trained[: len(prompt_ids)].any()  # every prompt token is masked ...
    completion_ids = tokenizer.encode(row["completion"], add_special_tokens=False)
    # ... and exactly the answer and its end-of-turn marker are trained (not the newline after it)
    assert tokens[trained].tolist() == completion_ids + [tokenizer.eos_token_id]


def test_without_masking_everything_is_trained(tmp_path, tokenizer):
    row = {"prompt": "how many teams", "completion": "select count"}
    enc = encode(tokenizer, write_jsonl(tmp_path / "d.jsonl", [row])).encoded["train"]
    assert enc.trained[0].all()


def test_multi_turn_chat_trains_every_assistant_turn(tmp_path, tokenizer):
    msgs = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "name the city"},
        {"role": "assistant", "content": "city one"},
        {"role": "user", "content": "and the team"},
        {"role": "assistant", "content": "team two"},
    ]
    enc = encode(tokenizer, write_jsonl(tmp_path / "d.jsonl", [{"messages": msgs}]), mask_prompt=True)
    tokens, trained = enc.encoded["train"].tokens[0], enc.encoded["train"].trained[0]
    trained_text = tokenizer.decode(tokens[trained].tolist())
    assert "city one" in trained_text and "team two" in trained_text
    assert "name the city" not in trained_text and "be brief" not in trained_text and "and the team" not in trained_text
    # two separate spans
    assert np.count_nonzero(np.diff(trained.astype(int)) == 1) == 2
    share = enc.report.splits["train"].trained_share
    assert 0 < share < 1 and abs(share - trained.mean()) < 1e-9


def test_text_rows_end_with_eos(tmp_path, tokenizer):
    enc = encode(tokenizer, write_jsonl(tmp_path / "d.jsonl", [{"text": "select city"}])).encoded["train"]
    assert enc.tokens[0][0] == tokenizer.bos_token_id and enc.tokens[0][-1] == tokenizer.eos_token_id


def test_no_chat_template_uses_the_documented_fallback_with_a_warning(tmp_path, demo_model_no_template):
    tok = load_tokenizer(demo_model_no_template)
    row = {"prompt": "count the teams", "completion": "select count"}
    result = encode(tok, write_jsonl(tmp_path / "d.jsonl", [row]), mask_prompt=True)
    assert any("no chat template" in w and "User: …" in w for w in result.report.warnings)
    enc = result.encoded["train"]
    text = tok.decode(enc.tokens[0].tolist())
    assert text.startswith("<s>User: count the teams\n\nAssistant: select count</s>")
    assert tok.decode(enc.tokens[0][enc.trained[0]].tolist()).startswith(" select count</s>")


def test_long_rows_are_truncated_and_counted(tmp_path, tokenizer):
    rows = [{"text": "team " * 300}, {"text": "city"}, {"text": "year " * 100}]
    result = encode(tokenizer, write_jsonl(tmp_path / "d.jsonl", rows), max_seq_length=64)
    enc, rep = result.encoded["train"], result.report.splits["train"]
    assert rep.truncated == 2 and enc.truncated == 2
    assert max(len(t) for t in enc.tokens) == 64
    assert rep.max_len > 300  # the report shows the real length before truncation
    assert any("2 train row(s) are longer than max_seq_length=64" in w for w in result.report.warnings)


def test_report_counts_tokens_with_a_model_and_characters_without(tmp_path, tokenizer):
    path = write_jsonl(tmp_path / "d.jsonl", [{"text": "select city from table"}] * 4)
    assert check_data(path).report.splits["train"].unit == "characters"
    rep = check_data(path, tokenizer).report.splits["train"]
    assert rep.unit == "tokens" and rep.min_len == rep.max_len > 2


def test_a_row_the_template_rejects_is_reported_on_its_line(tmp_path, demo_model):
    tok = load_tokenizer(demo_model)  # a fresh copy: the shared fixture keeps its template
    tok._tokenizer.chat_template = (
        "{% for m in messages %}{% if m['role'] == 'system' %}"
        "{{ raise_exception('System role not supported') }}{% endif %}"
        "{{ m['content'] }}{% endfor %}"
    )
    rows = [
        {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]},
        {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "a"}]},
    ]
    report = check_data(write_jsonl(tmp_path / "d.jsonl", rows), tok, valid_fraction=0).report
    [line] = report.problem_lines()
    assert line.startswith(f"{tmp_path / 'd.jsonl'}:2: the model's chat template rejected this row")
    assert "System role not supported" in line
