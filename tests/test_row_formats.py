"""The row format classes: detection, checks, and every view they give of a row."""

from __future__ import annotations

import pytest
from conftest import write_jsonl

from qlora_gui.core.data.formats import FORMATS, detect_format, format_named
from qlora_gui.core.data.intake import IntakeOptions, read_dataset
from qlora_gui.core.data.preference_rows import ChatPreferenceFormat, PreferenceFormat
from qlora_gui.core.data.prompt_rows import PromptFormat
from qlora_gui.core.data.rows import (
    CHAT,
    COMPLETIONS,
    TEXT,
    ChatFormat,
    CompletionsFormat,
    TextFormat,
    TurnsFormat,
)
from qlora_gui.core.data.vision_rows import VisionFormat

CHAT_ROW = {
    "messages": [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "name?"},
        {"role": "assistant", "content": "Ada"},
    ]
}
TOOL_ROW = {
    "messages": [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "tool_calls": [{"function": {"name": "w", "arguments": "{}"}}]},
        {"role": "tool", "content": "sunny"},
    ],
    "tools": [{"type": "function", "function": {"name": "w"}}],
}


def test_names_are_the_strings_reports_and_files_carry():
    assert list(FORMATS) == ["text", "completions", "chat", "preference", "chat_preference", "prompts", "vision"]
    assert [type(f) for f in FORMATS.values()] == [
        TextFormat,
        CompletionsFormat,
        ChatFormat,
        PreferenceFormat,
        ChatPreferenceFormat,
        PromptFormat,
        VisionFormat,
    ]
    assert all(FORMATS[name].name == name for name in FORMATS)
    assert [f.keys_shown for f in FORMATS.values()] == [
        "'text'",
        "'prompt'+'completion'",
        "'messages'",
        "'prompt'+'chosen'+'rejected'",
        "'messages'+'chosen'+'rejected'",
        "'prompt'",
        "'images'+'messages'",
    ]


@pytest.mark.parametrize(
    "row, expected",
    [
        ({"text": "t"}, "text"),
        ({"prompt": "p", "completion": "c"}, "completions"),
        ({"messages": []}, "chat"),
        # mlx-lm's precedence: messages over prompt+completion over text, whatever else the row holds.
        ({"text": "t", "prompt": "p", "completion": "c", "messages": []}, "chat"),
        ({"text": "t", "prompt": "p", "completion": "c"}, "completions"),
        ({"text": "t", "prompt": "p"}, "text"),
        ({"prompt": "p"}, "prompts"),  # GRPO's: a prompt alone, or with an answer and a system turn
        ({"prompt": "p", "answer": "a", "system": "s"}, "prompts"),
        ({"completion": "c"}, None),
        ({"instruction": "i", "output": "o"}, None),
        ({}, None),
    ],
)
def test_detection_follows_mlx_lm_precedence(row, expected):
    found = detect_format(row)
    assert (found.name if found else None) == expected


@pytest.mark.parametrize(
    "fmt, row, errors",
    [
        (TEXT, {"text": "fine"}, []),
        (TEXT, {"text": 42}, ["'text' must be a string, got a number"]),
        (TEXT, {"text": " \n"}, ["'text' is empty; fill it or remove the row"]),
        (COMPLETIONS, {"prompt": "", "completion": "c"}, []),
        (
            COMPLETIONS,
            {"prompt": 1, "completion": None},
            ["'prompt' must be a string, got a number", "'completion' must be a string, got null"],
        ),
        (
            COMPLETIONS,
            {"prompt": "p", "completion": "  "},
            ["'completion' is empty; there is nothing to learn from this row"],
        ),
        (CHAT, CHAT_ROW, []),
        (CHAT, TOOL_ROW, []),  # a tool call stands in for an assistant turn's text
        (CHAT, {"messages": [{"role": "user", "content": [{"type": "text", "text": "a"}]}]}, []),
        (CHAT, {"messages": {}}, ['\'messages\' must be a list of {"role", "content"} turns, got an object']),
        (CHAT, {"messages": []}, ["'messages' is empty; a chat row needs at least one turn"]),
        (
            CHAT,
            {"messages": [{"role": "user", "content": "x"}], "tools": "w"},
            ["'tools' must be a list of tool definitions, got a string"],
        ),
        (
            CHAT,
            {
                "messages": [
                    "hi",
                    {"role": "bot", "content": "x"},
                    {"content": None},
                    {"role": "user", "content": 5},
                    {"role": "user", "content": [{"type": "image"}]},
                ]
            },
            [
                "messages[0] must be an object with 'role' and 'content', got a string",
                "messages[1] has 'bot'; use one of system, user, assistant, tool",
                "messages[2] has no role; use one of system, user, assistant, tool",
                "messages[2] has no 'content'; give the turn's text",
                "messages[3] 'content' must be a string, got a number",
                "messages[4] 'content' must be a string, got a list",
            ],
        ),
    ],
)
def test_each_format_checks_its_rows(fmt, row, errors):
    assert fmt.check(row, mask_prompt=False) == errors


def test_only_chat_rows_can_fail_for_want_of_an_assistant_turn_when_masking():
    no_answer = {"messages": [{"role": "user", "content": "hi"}]}
    assert CHAT.check(no_answer, mask_prompt=False) == []
    assert CHAT.check(no_answer, mask_prompt=True) == [
        "no assistant turn: with 'train on completions only' this row would train on nothing"
    ]
    assert TEXT.check({"text": "t"}, mask_prompt=True) == []
    assert COMPLETIONS.check({"prompt": "p", "completion": "c"}, mask_prompt=True) == []


def test_only_text_rows_cannot_mask_the_prompt(tmp_path):
    assert [f.can_mask_prompt for f in FORMATS.values()] == [False, True, True, True, True, True, True]
    assert isinstance(TEXT, TextFormat) and not isinstance(TEXT, TurnsFormat)
    assert isinstance(COMPLETIONS, TurnsFormat) and isinstance(CHAT, TurnsFormat)
    write_jsonl(tmp_path / "train.jsonl", [{"text": "a"}, {"text": "b"}])
    write_jsonl(tmp_path / "valid.jsonl", [{"text": "c"}])
    intake = read_dataset(tmp_path, IntakeOptions(mask_prompt=True))
    # Said once, on the train file, not once per split.
    assert [(p.file, p.line) for p in intake.problems.items] == [(str(tmp_path / "train.jsonl"), 1)]
    assert "text rows have no prompt to mask" in intake.problems.items[0].message
    pc = write_jsonl(tmp_path / "pc.jsonl", [{"prompt": "p", "completion": "c"}] * 2)
    assert read_dataset(pc, IntakeOptions(mask_prompt=True)).problems.count == 0


def test_splits_carry_the_format_name_as_a_plain_string(tmp_path):
    intake = read_dataset(write_jsonl(tmp_path / "d.jsonl", [CHAT_ROW] * 4))
    assert intake.format == "chat" and type(intake.format) is str
    assert all(type(s.format) is str for s in intake.splits.values())


def test_turns_of_completions_and_chat_rows():
    assert COMPLETIONS.as_messages({"prompt": "p", "completion": "c"}) == [
        {"role": "user", "content": "p"},
        {"role": "assistant", "content": "c"},
    ]
    parts = {
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
            {"role": "assistant", "content": None, "tool_calls": []},
        ]
    }
    assert CHAT.as_messages(parts) == [
        {"role": "user", "content": "ab"},
        {"role": "assistant", "content": None, "tool_calls": []},
    ]
    assert parts["messages"][0]["content"][0] == {"type": "text", "text": "a"}  # the row itself is left alone
    assert CHAT.tools(TOOL_ROW) == TOOL_ROW["tools"] and CHAT.tools(CHAT_ROW) is None
    # Only chat rows hand tools to the template, as before: a stray key on a completions row is ignored.
    assert COMPLETIONS.tools({"prompt": "p", "completion": "c", "tools": []}) is None


def test_character_lengths():
    assert TEXT.char_length({"text": "hello"}) == 5
    assert COMPLETIONS.char_length({"prompt": "ab", "completion": "cde"}) == 5
    assert CHAT.char_length(TOOL_ROW) == len("weather?") + len("sunny")
    assert format_named("chat").char_length(CHAT_ROW) == sum(len(t["content"]) for t in CHAT_ROW["messages"])


def test_preview_columns_per_format():
    assert TEXT.preview({"text": "a  b\n\tc"}) == {"text": "a b c"}
    assert TEXT.preview({"text": "abcdefgh"}, width=5) == {"text": "abcd…"}
    assert COMPLETIONS.preview({"prompt": "p\nq", "completion": "c"}) == {"prompt": "p q", "completion": "c"}
    assert CHAT.preview(CHAT_ROW) == {"turns": "5", "user": "hi", "assistant": "Ada"}
    # Only assistant turns with text count: a tool call alone shows no answer.
    assert CHAT.preview(TOOL_ROW) == {"turns": "3", "user": "weather?", "assistant": ""}
    assert format_named("completions").preview({"prompt": "p", "completion": "c"}, width=1) == {
        "prompt": "p",
        "completion": "c",
    }


def test_samples_cut_prompt_from_reference():
    assert TEXT.sample({"text": "table: t\nQ: how many?\nA: SELECT 1"}) == (
        "table: t\nQ: how many?\nA:",
        "",
        " SELECT 1",
    )
    assert TEXT.sample({"text": "one two three four"}) == ("one two", "", " three four")
    assert COMPLETIONS.sample({"prompt": "p", "completion": "c"}) == ("p", "", "c")
    assert CHAT.sample(CHAT_ROW) == ("name?", "be brief", "Ada")
    assert CHAT.sample({"messages": [{"role": "user", "content": "hi"}]}) == ("hi", "", "")
