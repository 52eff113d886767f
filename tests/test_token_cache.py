"""The token cache: same data, tokenizer and settings read back without the tokenizer; any change encodes again;
a damaged entry is made again; rows stream from the file in blocks, whatever the block size."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import fixture_texts, write_jsonl

from qlora_gui.core.data import file_rows, split_encoding, token_cache
from qlora_gui.core.data.batching import epoch_batches, make_batch
from qlora_gui.core.data.dataset import check_data
from qlora_gui.core.data.intake import IntakeOptions, read_dataset
from qlora_gui.core.model.model_files import load_tokenizer


@pytest.fixture()
def calls(monkeypatch) -> list[int]:
    """Rows passed to the tokenizer, one entry per batch call."""
    seen: list[int] = []
    real = split_encoding.tokenize_plain

    def counting(tokenizer, texts):
        seen.append(len(texts))
        return real(tokenizer, texts)

    monkeypatch.setattr(split_encoding, "tokenize_plain", counting)
    return seen


@pytest.fixture()
def data(tmp_path) -> Path:
    return write_jsonl(tmp_path / "rows.jsonl", [{"text": t} for t in fixture_texts(60)])


def _arrays(check) -> dict:
    return {
        name: (enc.tokens.values.tolist(), enc.tokens.starts.tolist(), enc.trained.values.tolist(), enc.lines)
        for name, enc in check.encoded.items()
    }


def test_the_same_data_again_reads_the_cache_and_never_the_tokenizer(demo_model, data, calls, monkeypatch):
    tok = load_tokenizer(demo_model)
    first = check_data(data, tok, max_seq_length=32, batch_size=2, seed=3)
    assert calls and first.report.usable
    calls.clear()
    again = check_data(data, tok, max_seq_length=32, batch_size=2, seed=3)
    assert calls == [] and again.encoded["train"].tokens.in_file  # rows stay in the file
    assert again.report.to_text() == first.report.to_text() and _arrays(again) == _arrays(first)
    assert again.raw["valid"].lines == first.raw["valid"].lines
    assert again.raw["train"].rows[0] == first.raw["train"].rows[0]
    monkeypatch.setenv("QLORA_GUI_TOKEN_CACHE", "off")  # the same check without any cache gives the same arrays
    plain = check_data(data, tok, max_seq_length=32, batch_size=2, seed=3)
    assert _arrays(plain) == _arrays(again) and plain.report.to_text() == again.report.to_text()
    # Training batches the cached split exactly as the one made in memory.
    for idx in epoch_batches(again.encoded["train"].lengths, 4, seed=3, epoch=1)[:3]:
        a, b = make_batch(again.encoded["train"], idx), make_batch(plain.encoded["train"], idx)
        assert all(np.array_equal(x, y) for x, y in zip(a.arrays(), b.arrays(), strict=True))


def test_an_edited_row_another_tokenizer_or_max_length_encode_again(demo_model, data, calls):
    tok = load_tokenizer(demo_model)
    before = check_data(data, tok, max_seq_length=32)
    lines = data.read_text().splitlines()
    lines[4] = json.dumps({"text": "an edited row with new words"})
    data.write_text("\n".join(lines) + "\n")
    calls.clear()
    edited = check_data(data, tok, max_seq_length=32)
    assert calls, "an edited file must be encoded again"
    split = next(enc for enc in edited.encoded.values() if 5 in enc.lines)
    row = split.tokens[split.lines.index(5)]
    assert tok.decode(row.tolist()).endswith("an edited row with new words</s>")
    assert _arrays(edited) != _arrays(before)

    calls.clear()
    check_data(data, tok, max_seq_length=16)
    assert calls, "another max length must be encoded again"

    other = load_tokenizer(demo_model)
    other._tokenizer.add_tokens(["edited"])
    calls.clear()
    retokenized = check_data(data, other, max_seq_length=32)
    assert calls, "another tokenizer must encode again"
    assert _arrays(retokenized) != _arrays(edited)
    calls.clear()
    check_data(data, tok, max_seq_length=32)
    assert calls == []  # each of them was kept


@pytest.mark.parametrize("damage", ["truncated ids", "garbage report", "missing mask"])
def test_a_damaged_entry_is_ignored_and_made_again(demo_model, data, calls, token_cache_folder, damage):
    tok = load_tokenizer(demo_model)
    first = _arrays(check_data(data, tok))  # read now: the damage below rewrites a file it maps
    (entry,) = [p for p in token_cache_folder.iterdir()]
    if damage == "truncated ids":
        ids = entry / "train.ids"
        ids.write_bytes(ids.read_bytes()[:-4])
    elif damage == "garbage report":
        (entry / token_cache.META).write_bytes(b"not a pickle")
    else:
        (entry / "train.mask").unlink()
    calls.clear()
    again = check_data(data, tok)
    assert calls and _arrays(again) == first
    calls.clear()
    assert _arrays(check_data(data, tok)) == first and calls == []  # rewritten whole
    assert [p.name for p in token_cache_folder.iterdir()] == [entry.name]  # no staging folder left behind


def test_the_cache_keeps_within_its_limit_newest_first(demo_model, tmp_path, token_cache_folder, calls, monkeypatch):
    tok = load_tokenizer(demo_model)
    monkeypatch.setenv("QLORA_GUI_TOKEN_CACHE_GB", "0.0000001")  # 100 bytes: room for the newest entry only
    files = [write_jsonl(tmp_path / f"d{i}.jsonl", [{"text": t} for t in fixture_texts(20, i)]) for i in range(3)]
    for file in files:
        check_data(file, tok)
    assert len(list(token_cache_folder.iterdir())) == 1
    calls.clear()
    check_data(files[-1], tok)
    assert calls == []  # the one kept is the newest


def test_rows_stream_across_block_edges_with_their_lines(tmp_path, monkeypatch):
    rows = [{"text": t} for t in fixture_texts(30)]
    path = write_jsonl(tmp_path / "rows.jsonl", rows[:10], ["", "  "] + [json.dumps(r) for r in rows[10:]])
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes().replace(b"\n", b"\r\n", 5))
    monkeypatch.setattr(file_rows, "BLOCK", 7)  # a row never fits a block
    split = read_dataset(path, IntakeOptions(valid_fraction=0.0)).splits["train"]
    assert isinstance(split.rows, file_rows.FileRows)
    assert list(split.rows) == rows and [split.rows[i] for i in (0, 12, -1)] == [rows[0], rows[12], rows[-1]]
    assert split.lines == list(range(1, 11)) + list(range(13, 33))


def test_plain_text_in_one_batch_gives_the_ids_row_by_row_encoding_gives(demo_model):
    from qlora_gui.core.data.encode import _tokenize, tokenize_plain

    tok = load_tokenizer(demo_model)
    texts = ["select count", "<s> begins with BOS", "ends with EOS</s>", "<s>", "</s>", " ", "", "<s></s>"]
    texts += fixture_texts(20)
    ids, lengths = tokenize_plain(tok, texts)
    rows = [r.ids.tolist() for r in _tokenize(tok, texts, plain=True, offsets=False)]
    assert lengths.tolist() == [len(r) for r in rows] and ids.tolist() == [i for r in rows for i in r]
