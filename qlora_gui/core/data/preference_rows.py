"""Preference pairs, as TRL names them: a prompt, a chosen and a rejected answer to it.

Two formats: {"prompt", "chosen", "rejected"} and {"messages" (the prompt turns), "chosen", "rejected"}.
An answer is a string or a list of turns ending in the assistant's (TRL's conversational form). Each pair
trains as two chat rows, the prompt turns followed by one answer, and only the answer's tokens count.
"""

from __future__ import annotations

from typing import Any

from .rows import ChatFormat, TurnsFormat, _cut, _turn_errors, _type_name, content_text

SIDES = ("chosen", "rejected")


def answer_text(value: Any) -> str | None:
    """An answer as text: a string, or the content of the last assistant turn of a list of turns."""
    if isinstance(value, list):
        turns = [t for t in value if isinstance(t, dict) and t.get("role") == "assistant"]
        return content_text(turns[-1].get("content")) if turns else None
    return content_text(value)


class PreferenceFormat(TurnsFormat):
    """{"prompt": ..., "chosen": ..., "rejected": ...}: one user turn and two answers to it."""

    name = "preference"
    keys = ("prompt", "chosen", "rejected")
    pair = True  # each row trains as two sequences: the prompt with its chosen answer, and with its rejected one

    def matches(self, row: dict[str, Any]) -> bool:
        # Either side alone is enough to recognise the row, so that a missing side is named, not "unknown keys".
        return self.keys[0] in row and any(side in row for side in SIDES)

    def prompt_turns(self, row: dict[str, Any]) -> list[dict[str, Any]]:
        """The turns before the answer: the prompt as the user's turn, or its own list of turns (TRL's
        conversational form)."""
        prompt = row[self.keys[0]]
        return (
            ChatFormat().as_messages({"messages": prompt})
            if isinstance(prompt, list)
            else [{"role": "user", "content": prompt}]
        )

    def side(self, row: dict[str, Any], side: str) -> list[dict[str, Any]]:
        """The chat turns of one side: the prompt, then that answer."""
        return [*self.prompt_turns(row), {"role": "assistant", "content": answer_text(row[side]) or ""}]

    def as_messages(self, row: dict[str, Any]) -> list[dict[str, Any]]:
        """The prompt and the chosen answer: what the playground samples (the chosen answer is the reference)."""
        return self.side(row, "chosen")

    def _prompt_errors(self, row: dict[str, Any]) -> list[str]:
        key, prompt = self.keys[0], row[self.keys[0]]
        if isinstance(prompt, list) and prompt:
            errors = [e for i, turn in enumerate(prompt) for e in _turn_errors(f"{key}[{i}]", turn)]
            if not errors and prompt[-1].get("role") != "user":
                errors.append(f"the last turn of '{key}' must be the user's: the answers reply to it")
            return errors
        if not isinstance(prompt, str):
            return [f"'{key}' must be a string or a non-empty list of turns, got {_type_name(prompt)}"]
        return [] if prompt.strip() else [f"'{key}' is empty; give the question both answers reply to"]

    def check(self, row: dict[str, Any], mask_prompt: bool) -> list[str]:
        errors = self._prompt_errors(row)
        answers = {}
        for side in SIDES:
            if side not in row:
                errors.append(f"no '{side}' answer; a preference row needs both 'chosen' and 'rejected'")
                continue
            text = answer_text(row[side])
            if text is None:
                errors.append(
                    f"'{side}' must be a string or a list of turns ending with the assistant's, "
                    f"got {_type_name(row[side])}"
                )
            elif not text.strip():
                errors.append(f"'{side}' is empty; give the answer's text or remove the row")
            else:
                answers[side] = text
        if len(answers) == 2 and answers["chosen"].strip() == answers["rejected"].strip():
            errors.append("'chosen' and 'rejected' are the same answer: the pair teaches nothing; remove it")
        return errors

    def char_length(self, row: dict[str, Any]) -> int:
        prompt = sum(len(t.get("content") or "") for t in self.prompt_turns(row))
        return prompt + max(len(answer_text(row[s]) or "") for s in SIDES)

    def preview(self, row: dict[str, Any], width: int = 240) -> dict[str, str]:
        turns = self.prompt_turns(row)
        prompt = next((t["content"] for t in reversed(turns) if t.get("role") == "user" and t.get("content")), "")
        return {
            "prompt": _cut(prompt, width),
            "chosen": _cut(answer_text(row["chosen"]) or "", width),
            "rejected": _cut(answer_text(row["rejected"]) or "", width),
        }


class ChatPreferenceFormat(PreferenceFormat):
    """{"messages": [prompt turns], "chosen": ..., "rejected": ...}: a conversation and two next answers."""

    name = "chat_preference"
    keys = ("messages", "chosen", "rejected")

    def _prompt_errors(self, row: dict[str, Any]) -> list[str]:
        if not isinstance(row["messages"], list) or not row["messages"]:
            return ["'messages' must be a non-empty list of the prompt's turns"]
        return super()._prompt_errors(row)


PREFERENCE, CHAT_PREFERENCE = PreferenceFormat(), ChatPreferenceFormat()
