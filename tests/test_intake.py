"""Data intake: formats, the split, tolerated input, and every kind of bad input by file and line."""

from __future__ import annotations

import json

import pytest
from conftest import write_jsonl

from qlora_gui.core.data.dataset import check_data
from qlora_gui.core.data.intake import IntakeOptions, read_dataset


def problems_of(path, **kw) -> list[str]:
    return check_data(path, **kw).report.problem_lines()


# ------------------------------------------------------------------ formats


@pytest.mark.parametrize(
    "row, fmt",
    [
        ({"text": "hello there"}, "text"),
        ({"prompt": "2+2?", "completion": "4"}, "completions"),
        (
            {
                "messages": [
                    {"role": "system", "content": "be brief"},
                    {"role": "user", "content": "hi"},
                    {"role": "assistant", "content": "hello"},
                ]
            },
            "chat",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": "weather?"},
                    {"role": "assistant", "tool_calls": [{"function": {"name": "w", "arguments": "{}"}}]},
                    {"role": "tool", "content": "sunny"},
                    {"role": "assistant", "content": "Sunny."},
                ],
                "tools": [{"type": "function", "function": {"name": "w"}}],
            },
            "chat",
        ),
    ],
)
def test_each_format_is_detected(tmp_path, row, fmt):
    path = write_jsonl(tmp_path / "d.jsonl", [row] * 10)
    report = check_data(path).report
    assert report.usable, report.problem_lines()
    assert report.format == fmt
    assert report.splits["train"].rows == 9 and report.splits["valid"].rows == 1


def test_json_array_file_and_folder_layout(tmp_path):
    rows = [{"text": f"row {i}"} for i in range(20)]
    (tmp_path / "a.json").write_text(json.dumps(rows, indent=2))
    report = check_data(tmp_path / "a.json", valid_fraction=0.25).report
    assert report.usable and report.splits["train"].rows == 15 and report.splits["valid"].rows == 5
    # Pretty-printed arrays keep each row's own line number for the preview and for errors.
    assert report.splits["train"].preview_lines[0] in (2, 5, 8)

    folder = tmp_path / "folder"
    write_jsonl(folder / "train.jsonl", rows)
    write_jsonl(folder / "valid.jsonl", rows[:3])
    write_jsonl(folder / "test.jsonl", rows[:2])
    report = check_data(folder).report
    assert {k: s.rows for k, s in report.splits.items()} == {"train": 20, "valid": 3, "test": 2}


def test_folder_without_valid_holds_out_a_share(tmp_path):
    write_jsonl(tmp_path / "train.jsonl", [{"text": f"r{i}"} for i in range(30)])
    report = check_data(tmp_path).report
    assert report.splits["valid"].rows == 3 and report.splits["train"].rows == 27
    assert any("held out" in w for w in report.warnings)


def test_split_is_seeded_disjoint_and_complete(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"text": f"row {i}"} for i in range(50)])
    a = read_dataset(path, IntakeOptions(valid_fraction=0.2, seed=7))
    b = read_dataset(path, IntakeOptions(valid_fraction=0.2, seed=7))
    c = read_dataset(path, IntakeOptions(valid_fraction=0.2, seed=8))
    train, valid = set(a.splits["train"].lines), set(a.splits["valid"].lines)
    assert len(valid) == 10 and len(train) == 40
    assert not train & valid and train | valid == set(range(1, 51))
    assert a.splits["valid"].lines == b.splits["valid"].lines
    assert a.splits["valid"].lines != c.splits["valid"].lines


def test_harmless_things_are_tolerated(tmp_path):
    path = tmp_path / "d.jsonl"
    body = '{"text": "one"}\r\n\r\n{"text": "two"}\r\n   \n{"text": "three"}\r\n'
    path.write_bytes(b"\xef\xbb\xbf" + body.encode())
    report = check_data(path, valid_fraction=0).report
    assert report.usable and report.problem_count == 0
    assert report.splits["train"].rows == 3
    assert report.splits["train"].preview_lines == [1, 3, 5]


def test_format_is_decided_from_all_rows_not_the_first(tmp_path):
    rows = [{"text": "a"}] * 3 + [{"prompt": "p", "completion": "c"}] + [{"text": "b"}] * 3
    lines = problems_of(write_jsonl(tmp_path / "mix.jsonl", rows))
    assert len(lines) == 1
    assert lines[0].startswith(f"{tmp_path / 'mix.jsonl'}:4: this row is completions data")
    assert "file is text data" in lines[0] and "1 row(s) differ" in lines[0]


# ------------------------------------------------------------------ bad input


def test_non_utf8_bytes_name_the_line_and_byte(tmp_path):
    path = tmp_path / "latin.jsonl"
    path.write_bytes(b'{"text": "ok"}\n{"text": "caf\xe9"}\n')
    [line] = problems_of(path)
    assert line.startswith(f"{path}:2: byte 0xE9 at column 14 is not UTF-8")
    assert "Windows-1252" in line and "Re-save the file as UTF-8" in line


@pytest.mark.parametrize(
    "content, expected",
    [
        (b"\x00\x01\x02binary\x00", "binary data (a NUL byte at byte offset 0)"),
        (b"PAR1\x00\x00", "this is a Parquet file"),
        ('{"text": "x"}\n'.encode("utf-16"), "UTF-16"),
    ],
)
def test_binary_and_other_encodings(tmp_path, content, expected):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(content)
    [line] = problems_of(path)
    assert line.startswith(f"{path}:1: ") and expected in line


def test_invalid_json_lines(tmp_path):
    path = write_jsonl(
        tmp_path / "d.jsonl",
        [{"text": "a"}],
        ['{"text": "b"', '{"text": "c"} {"text": "d"}', '{"text": "e"}', "EOF garbage"],
    )
    lines = problems_of(path)
    assert lines[0].startswith(f"{path}:2: invalid JSON at column 13")
    assert lines[1].startswith(f"{path}:3: more than one JSON value on this line")
    assert lines[2] == f"{path}:5: trailing text after the last row: 'EOF garbage'; delete it"


def test_json_array_errors_have_lines(tmp_path):
    path = tmp_path / "a.json"
    path.write_text('[\n  {"text": "a"},\n  {"text": 42}\n]\nextra')
    lines = problems_of(path)
    assert f"{path}:3: 'text' must be a string, got a number" in lines
    assert any(line.startswith(f"{path}:5: trailing text after the closing ']'") for line in lines)


def test_pretty_printed_object_is_explained(tmp_path):
    path = tmp_path / "obj.json"
    path.write_text(json.dumps({"data": [{"text": "a"}]}, indent=2))
    [line] = problems_of(path)
    assert line.startswith(f"{path}:1: the file is one JSON object") and "'data' holds a list" in line


def test_unknown_keys_list_what_was_found_and_expected(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"instruction": "x", "input": "", "output": "y"}])
    [line] = problems_of(path)
    assert line.startswith(f"{path}:1: no known format: keys found 'instruction', 'input', 'output'")
    assert '{"text"}; {"prompt", "completion"}; {"messages"}' in line and "Alpaca" in line


@pytest.mark.parametrize(
    "row, message",
    [
        ({"text": 42}, "'text' must be a string, got a number"),
        ({"text": "  "}, "'text' is empty"),
        ({"prompt": "p", "completion": None}, "'completion' must be a string, got null"),
        ({"messages": "hi"}, '\'messages\' must be a list of {"role", "content"} turns, got a string'),
        ({"messages": []}, "'messages' is empty"),
        (
            {"messages": [{"role": "bot", "content": "x"}]},
            "messages[0] has 'bot'; use one of system, user, assistant, tool",
        ),
        ({"messages": [{"content": "x"}]}, "messages[0] has no role"),
        ({"messages": [{"role": "user"}]}, "messages[0] has no 'content'"),
        ({"messages": [{"role": "user", "content": 5}]}, "messages[0] 'content' must be a string, got a number"),
        ([1, 2], "the row is a JSON list, not an object"),
    ],
)
def test_wrong_value_types(tmp_path, row, message):
    path = write_jsonl(tmp_path / "d.jsonl", [row], ['{"text": "fine"}'] if "text" in str(row) else None)
    lines = problems_of(path)
    assert any(line.startswith(f"{path}:1: ") and message in line for line in lines), lines


@pytest.mark.parametrize("content, word", [(b"", "empty"), (b"\n  \n\r\n", "only blank lines")])
def test_empty_files(tmp_path, content, word):
    path = tmp_path / "e.jsonl"
    path.write_bytes(content)
    assert problems_of(path) == [f"{path}:1: the file is {word}; it needs at least one row"]


def test_fewer_rows_than_one_batch(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"text": f"r{i}"} for i in range(3)])
    assert problems_of(path, batch_size=4, valid_fraction=0) == [
        f"{path}:3: only 3 training row(s), fewer than one batch of 4; add rows or lower the batch size"
    ]


def test_completions_only_on_text_data_is_an_error(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"text": "a"}, {"text": "b"}])
    [line] = problems_of(path, mask_prompt=True)
    assert line.startswith(f"{path}:1: 'train on completions only' needs prompt/completion or chat rows")


def test_missing_paths_and_folders(tmp_path):
    assert "no such file or folder" in problems_of(tmp_path / "nope.jsonl")[0]
    (tmp_path / "notes.txt").write_text("x")
    assert "the folder has no train.jsonl (found: notes.txt)" in problems_of(tmp_path)[0]
    assert "is not a data file" in problems_of(tmp_path / "notes.txt")[0]


def test_at_most_twenty_problems_are_listed_then_a_count(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"text": i} for i in range(30)])
    report = check_data(path).report
    lines = report.problem_lines()
    assert report.problem_count == 30 and len(lines) == 21
    assert lines[0].startswith(f"{path}:1: ") and lines[19].startswith(f"{path}:20: ")
    assert lines[20] == "… and 10 more problem(s)"
    assert not report.usable


def test_bad_rows_are_never_kept(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"text": "good"}, {"text": 1}, {"text": "also good"}])
    intake = read_dataset(path, IntakeOptions(valid_fraction=0))
    assert [r["text"] for r in intake.splits["train"].rows] == ["good", "also good"]
    assert intake.problems.count == 1
