"""The three row formats mlx-lm reads, one class each, as in mlx-lm's tuner datasets.

A format knows the keys that identify its rows, the checks each row must pass,
and the views the rest of the app takes of a row: length, preview, chat turns
and playground sample. Reports, events and saved files carry its `name`.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from typing import Any, ClassVar, NamedTuple

ROLES = ("system", "user", "assistant", "tool")
# A last line such as "A: SELECT ..." or "Answer: ...": the label ends the prompt, the rest is the answer.
_LABELLED_LINE = re.compile(r"^(\s*[A-Za-z][\w ]{0,24}:)(.*)$", re.S)


class SampleText(NamedTuple):
    """A row cut into what the playground asks and the answer the data gives."""

    prompt: str
    system: str
    reference: str


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    return {
        str: "a string",
        int: "a number",
        float: "a number",
        bool: "true/false",
        list: "a list",
        dict: "an object",
    }.get(type(value), type(value).__name__)


def content_text(content: Any) -> str | None:
    """A message's content as text: a string, or a list of {"type": "text"} parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(
        isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str) for p in content
    ):
        return "".join(p["text"] for p in content)
    return None


def split_text_row(text: str) -> tuple[str, str]:
    """(prompt, reference) for a plain-text row: up to its last line's label, else its first half."""
    head, sep, last = text.rpartition("\n")
    match = _LABELLED_LINE.match(last)
    if sep and match:
        return head + sep + match.group(1), match.group(2)
    words = text.split(" ")
    cut = max(1, len(words) // 2)
    return " ".join(words[:cut]), " " + " ".join(words[cut:])


def _cut(s: str, width: int) -> str:
    s = " ".join(s.split())
    return s if len(s) <= width else s[: width - 1] + "…"


class RowFormat(ABC):
    """One row format: how to recognise, check and show its rows."""

    name: ClassVar[str]  # as reports, events, metrics and the UI spell it
    keys: ClassVar[tuple[str, ...]]  # the keys that identify a row (mlx-lm's names)
    can_mask_prompt: ClassVar[bool] = True  # rows have a prompt that "train on completions only" leaves out

    def matches(self, row: dict[str, Any]) -> bool:
        return all(k in row for k in self.keys)

    @property
    def keys_shown(self) -> str:
        """The identifying keys as messages quote them: 'prompt'+'completion'."""
        return "+".join(f"'{k}'" for k in self.keys)

    @abstractmethod
    def check(self, row: dict[str, Any], mask_prompt: bool) -> list[str]:
        """Everything wrong with one row of this format, as messages a person can act on."""

    @abstractmethod
    def char_length(self, row: dict[str, Any]) -> int:
        """Length in characters, for the report before a tokenizer is chosen."""

    @abstractmethod
    def preview(self, row: dict[str, Any], width: int = 240) -> dict[str, str]:
        """A short, readable view of a row: column -> text, for the preview table."""

    @abstractmethod
    def sample(self, row: dict[str, Any]) -> SampleText:
        """The row as a playground prompt with its reference answer."""


class TextFormat(RowFormat):
    """{"text": ...}: tokenized as written and trained on every token."""

    name = "text"
    keys = ("text",)
    can_mask_prompt = False

    def text(self, row: dict[str, Any]) -> str:
        return row["text"]

    def check(self, row: dict[str, Any], mask_prompt: bool) -> list[str]:
        text = row["text"]
        if not isinstance(text, str):
            return [f"'text' must be a string, got {_type_name(text)}"]
        if not text.strip():
            return ["'text' is empty; fill it or remove the row"]
        return []

    def char_length(self, row: dict[str, Any]) -> int:
        return len(row["text"])

    def preview(self, row: dict[str, Any], width: int = 240) -> dict[str, str]:
        return {"text": _cut(row["text"], width)}

    def sample(self, row: dict[str, Any]) -> SampleText:
        prompt, reference = split_text_row(row["text"])
        return SampleText(prompt, "", reference)


class TurnsFormat(RowFormat):
    """Rows made of chat turns, which the model's chat template renders."""

    @abstractmethod
    def as_messages(self, row: dict[str, Any]) -> list[dict[str, Any]]:
        """The row's chat turns, with content as plain text."""

    def tools(self, row: dict[str, Any]) -> list | None:
        """Tool definitions for the chat template."""
        return None

    def char_length(self, row: dict[str, Any]) -> int:
        return sum(len(t.get("content") or "") for t in self.as_messages(row))

    def sample(self, row: dict[str, Any]) -> SampleText:
        """The last assistant turn is the reference; the user turn and system prompt before it ask for it."""
        turns = self.as_messages(row)
        last_answer = max((i for i, t in enumerate(turns) if t.get("role") == "assistant"), default=len(turns))
        before = turns[:last_answer]
        system = next((t.get("content") or "" for t in before if t.get("role") == "system"), "")
        prompt = next((t.get("content") or "" for t in reversed(before) if t.get("role") == "user"), "")
        reference = turns[last_answer].get("content") or "" if last_answer < len(turns) else ""
        return SampleText(prompt, system, reference)


class CompletionsFormat(TurnsFormat):
    """{"prompt": ..., "completion": ...}: one user turn and one assistant turn."""

    name = "completions"
    keys = ("prompt", "completion")

    def as_messages(self, row: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"role": "user", "content": row["prompt"]}, {"role": "assistant", "content": row["completion"]}]

    def check(self, row: dict[str, Any], mask_prompt: bool) -> list[str]:
        errors = []
        for key in ("prompt", "completion"):
            if not isinstance(row[key], str):
                errors.append(f"'{key}' must be a string, got {_type_name(row[key])}")
        if not errors and not row["completion"].strip():
            errors.append("'completion' is empty; there is nothing to learn from this row")
        return errors

    def preview(self, row: dict[str, Any], width: int = 240) -> dict[str, str]:
        return {"prompt": _cut(row["prompt"], width), "completion": _cut(row["completion"], width)}


class ChatFormat(TurnsFormat):
    """{"messages": [{"role", "content"}, ...]}, optionally with "tools"."""

    name = "chat"
    keys = ("messages",)

    def as_messages(self, row: dict[str, Any]) -> list[dict[str, Any]]:
        out = []
        for turn in row["messages"]:
            turn = dict(turn)
            if turn.get("content") is not None:
                turn["content"] = content_text(turn["content"])
            out.append(turn)
        return out

    def tools(self, row: dict[str, Any]) -> list | None:
        return row.get("tools")

    def check(self, row: dict[str, Any], mask_prompt: bool) -> list[str]:
        messages = row["messages"]
        if not isinstance(messages, list):
            return [f'\'messages\' must be a list of {{"role", "content"}} turns, got {_type_name(messages)}']
        if not messages:
            return ["'messages' is empty; a chat row needs at least one turn"]
        errors = []
        tools = row.get("tools")
        if tools is not None and not isinstance(tools, list):
            errors.append(f"'tools' must be a list of tool definitions, got {_type_name(tools)}")
        for i, turn in enumerate(messages):
            errors += _turn_errors(f"messages[{i}]", turn)
        if not errors and mask_prompt and not any(t.get("role") == "assistant" for t in messages):
            errors.append("no assistant turn: with 'train on completions only' this row would train on nothing")
        return errors

    def preview(self, row: dict[str, Any], width: int = 240) -> dict[str, str]:
        turns = self.as_messages(row)
        prompt = next((t["content"] for t in turns if t.get("role") == "user" and t.get("content")), "")
        answer = next((t["content"] for t in reversed(turns) if t.get("role") == "assistant" and t.get("content")), "")
        return {"turns": str(len(turns)), "user": _cut(prompt, width), "assistant": _cut(answer, width)}


def _turn_errors(where: str, turn: Any) -> list[str]:
    if not isinstance(turn, dict):
        return [f"{where} must be an object with 'role' and 'content', got {_type_name(turn)}"]
    errors = []
    role = turn.get("role")
    if role not in ROLES:
        shown = repr(role) if role is not None else "no role"
        errors.append(f"{where} has {shown}; use one of {', '.join(ROLES)}")
    if "content" not in turn or turn["content"] is None:
        if not (role == "assistant" and turn.get("tool_calls")):  # a tool call may stand in for the text
            errors.append(f"{where} has no 'content'; give the turn's text")
    elif content_text(turn["content"]) is None:
        errors.append(f"{where} 'content' must be a string, got {_type_name(turn['content'])}")
    return errors


TEXT, COMPLETIONS, CHAT = TextFormat(), CompletionsFormat(), ChatFormat()
