"""Tokenizing rows: chat templates, the no-template fallback, completions-only masks, truncation."""

from __future__ import annotations

import resource

import numpy as np
from conftest import write_jsonl

from qlora_gui.core.data.chat_template import render_chat
from qlora_gui.core.data.dataset import check_data
from qlora_gui.core.data.encode_workers import encoded_chunks
from qlora_gui.core.data.intake import IntakeOptions, read_dataset
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


def test_the_masks_of_a_chunk_are_each_rows_own(tmp_path):
    """masks_from_spans (every row at once) against spans_to_mask (row by row), with zero-width tokens, gaps
    between tokens and rows with no span."""
    from qlora_gui.core.data.encode import spans_to_mask
    from qlora_gui.core.data.flat_tokens import masks_from_spans

    rng = np.random.default_rng(0)
    offsets, lengths, spans, text_lengths, expected = [], [], [], [], []
    for _ in range(300):
        n = int(rng.integers(0, 12))
        widths = rng.integers(0, 4, n)  # 0: a zero-width token such as BOS
        gaps = rng.integers(0, 2, n)  # a skipped space
        hi = np.cumsum(widths + gaps)
        row = np.stack([hi - widths, hi], axis=1).astype(np.int64)
        size = int(hi[-1]) + 2 if n else 1
        pairs = min(int(rng.integers(0, 3)), (size + 1) // 2)
        cuts = np.sort(rng.choice(size + 1, size=2 * pairs, replace=False))
        row_spans = [(int(a), int(b)) for a, b in cuts.reshape(-1, 2)]
        offsets.append(row)
        lengths.append(n)
        spans.append(row_spans)
        text_lengths.append(size)
        expected.append(spans_to_mask(row, row_spans) if n else np.zeros(0, bool))
    got = masks_from_spans(np.concatenate(offsets), np.array(lengths), spans, text_lengths)
    assert got.tolist() == np.concatenate(expected).tolist()


def test_chat_rows_encoded_in_a_worker_process_are_those_encoded_here(tmp_path, demo_model):
    """The worker path (large files): same ids, masks, kept lines and problems as encoding in this process."""
    tok = load_tokenizer(demo_model)
    tok._tokenizer.chat_template = tok._tokenizer.chat_template.replace(
        "{% for", "{% if messages[0]['content'] == 'reject me' %}{{ raise_exception('no') }}{% endif %}{% for", 1
    )
    rows = [
        {"messages": [{"role": "user", "content": f"q{i}"}] + [{"role": "assistant", "content": f"a{i}"}] * (1 + i % 3)}
        for i in range(40)
    ]
    rows[5]["messages"][0]["content"] = "reject me"  # line 6
    raw = read_dataset(write_jsonl(tmp_path / "d.jsonl", rows), IntakeOptions(valid_fraction=0)).splits["train"]
    parts = [(0, raw.rows[:25]), (25, raw.rows[25:])]  # byte spans of the file: the worker reads the rows
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime
    here, there = (list(encoded_chunks(iter(parts), "chat", tok, True, workers)) for workers in (0, 1))
    assert resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime > children  # a worker process did run
    assert [start for start, _, _ in there] == [0, 25]
    for (_, a, rejects_a), (_, b, rejects_b) in zip(here, there, strict=True):
        assert (a.kept, a.ids.tolist(), a.trained.tolist(), a.lengths.tolist()) == (
            b.kept,
            b.ids.tolist(),
            b.trained.tolist(),
            b.lengths.tolist(),
        )
        assert [s.spans for s in a.spans] == [s.spans for s in b.spans] and rejects_a == rejects_b
    assert 5 not in here[0][1].kept and "rejected this row" in here[0][2][0][1]


def test_unmasked_rows_are_counted_alike_whatever_the_block(monkeypatch):
    """Blocks are cut by positions (long chat rows once made a block of 30 million): any cut, one count."""
    from qlora_gui.core.data import encoded_warnings
    from qlora_gui.core.data.ragged import Ragged

    rng = np.random.default_rng(1)
    rows = [rng.random(int(rng.integers(0, 30))) < 0.7 for _ in range(3000)]
    for row in rows[::7]:
        row[1:] = True
    expected = sum(1 for r in rows if len(r) > 1 and r[1:].all())
    for block in (1, 5, 100, 1 << 22):
        monkeypatch.setattr(encoded_warnings, "POSITIONS_PER_BLOCK", block)
        assert encoded_warnings.unmasked_rows(Ragged.from_rows(rows, np.bool_)) == expected
