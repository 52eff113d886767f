"""The three row formats mlx-lm reads, and the checks each row must pass."""

from __future__ import annotations

from typing import Any

# Format name -> the keys that identify it (mlx-lm's names for the formats).
FORMAT_KEYS: dict[str, tuple[str, ...]] = {
    "text": ("text",),
    "completions": ("prompt", "completion"),
    "chat": ("messages",),
}
ROLES = ("system", "user", "assistant", "tool")


def row_format(row: dict[str, Any]) -> str | None:
    """The format a row belongs to, by the same precedence mlx-lm uses."""
    if "messages" in row:
        return "chat"
    if "prompt" in row and "completion" in row:
        return "completions"
    if "text" in row:
        return "text"
    return None


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    return {str: "a string", int: "a number", float: "a number", bool: "true/false",
            list: "a list", dict: "an object"}.get(type(value), type(value).__name__)


def content_text(content: Any) -> str | None:
    """A message's content as text: a string, or a list of {"type": "text"} parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(
        isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str) for p in content
    ):
        return "".join(p["text"] for p in content)
    return None


def check_row(row: dict[str, Any], fmt: str, mask_prompt: bool) -> list[str]:
    """Everything wrong with one row of a known format, as messages a person can act on."""
    if fmt == "text":
        text = row["text"]
        if not isinstance(text, str):
            return [f"'text' must be a string, got {_type_name(text)}"]
        if not text.strip():
            return ["'text' is empty; fill it or remove the row"]
        return []
    if fmt == "completions":
        errors = []
        for key in ("prompt", "completion"):
            if not isinstance(row[key], str):
                errors.append(f"'{key}' must be a string, got {_type_name(row[key])}")
        if not errors and not row["completion"].strip():
            errors.append("'completion' is empty; there is nothing to learn from this row")
        return errors
    return _check_chat(row, mask_prompt)


def _check_chat(row: dict[str, Any], mask_prompt: bool) -> list[str]:
    messages = row["messages"]
    if not isinstance(messages, list):
        return [f"'messages' must be a list of {{\"role\", \"content\"}} turns, got {_type_name(messages)}"]
    if not messages:
        return ["'messages' is empty; a chat row needs at least one turn"]
    errors = []
    tools = row.get("tools")
    if tools is not None and not isinstance(tools, list):
        errors.append(f"'tools' must be a list of tool definitions, got {_type_name(tools)}")
    for i, turn in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(turn, dict):
            errors.append(f"{where} must be an object with 'role' and 'content', got {_type_name(turn)}")
            continue
        role = turn.get("role")
        if role not in ROLES:
            shown = repr(role) if role is not None else "no role"
            errors.append(f"{where} has {shown}; use one of {', '.join(ROLES)}")
        if "content" not in turn or turn["content"] is None:
            if not (role == "assistant" and turn.get("tool_calls")):
                errors.append(f"{where} has no 'content'; give the turn's text")
        elif content_text(turn["content"]) is None:
            errors.append(f"{where} 'content' must be a string, got {_type_name(turn['content'])}")
    if not errors and mask_prompt and not any(t.get("role") == "assistant" for t in messages):
        errors.append("no assistant turn: with 'train on completions only' this row would train on nothing")
    return errors


def as_messages(row: dict[str, Any], fmt: str) -> list[dict[str, Any]]:
    """Chat turns for a completions or chat row, with content as plain text."""
    if fmt == "completions":
        return [{"role": "user", "content": row["prompt"]}, {"role": "assistant", "content": row["completion"]}]
    out = []
    for turn in row["messages"]:
        turn = dict(turn)
        if turn.get("content") is not None:
            turn["content"] = content_text(turn["content"])
        out.append(turn)
    return out


def char_length(row: dict[str, Any], fmt: str) -> int:
    """Length in characters, for the report before a tokenizer is chosen."""
    if fmt == "text":
        return len(row["text"])
    return sum(len(t.get("content") or "") for t in as_messages(row, fmt))


def preview(row: dict[str, Any], fmt: str, width: int = 240) -> dict[str, str]:
    """A short, readable view of a row for the preview table."""
    def cut(s: str) -> str:
        s = " ".join(s.split())
        return s if len(s) <= width else s[: width - 1] + "…"

    if fmt == "text":
        return {"text": cut(row["text"])}
    if fmt == "completions":
        return {"prompt": cut(row["prompt"]), "completion": cut(row["completion"])}
    turns = as_messages(row, fmt)
    prompt = next((t["content"] for t in turns if t.get("role") == "user" and t.get("content")), "")
    answer = next((t["content"] for t in reversed(turns) if t.get("role") == "assistant" and t.get("content")), "")
    return {"turns": str(len(turns)), "user": cut(prompt), "assistant": cut(answer)}
