"""Prompts to learn from rewards (GRPO): a prompt, an optional system turn, an optional reference answer.

mlx-lm-lora's rows, {"prompt": ..., "answer": ..., "system": ...}, load as they are; the prompt may also be a
list of chat turns ending with the user's (TRL's conversational form). The model writes its own answers to the
prompt, rendered by the chat template with the generation prompt; rewards score them, and a reward that checks
against the data reads the row's `answer`.
"""

from __future__ import annotations

from typing import Any

from .rows import ChatFormat, SampleText, TurnsFormat, _cut, _turn_errors, _type_name, content_text

# Keys that make a row another format's even when it has a prompt.
OTHER_FORMATS_KEYS = ("completion", "chosen", "rejected", "messages", "text")


def reference_text(value: Any) -> str | None:
    """A reference answer as text: a string, or a number written as the data gives it; None when absent."""
    if value is None:
        return None
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return str(value)
    return value if isinstance(value, str) else None


class PromptFormat(TurnsFormat):
    """{"prompt": ..., "answer"?: ..., "system"?: ...}: what GRPO learns from."""

    name = "prompts"
    keys = ("prompt",)
    # Nothing of the row is trained (the model's own answers are), so "completions only" changes nothing here
    # and is no reason to refuse the rows.
    can_mask_prompt = True

    def matches(self, row: dict[str, Any]) -> bool:
        return "prompt" in row and not any(k in row for k in OTHER_FORMATS_KEYS)

    def as_messages(self, row: dict[str, Any]) -> list[dict[str, Any]]:
        """The prompt turns, after the system turn when the row has one."""
        prompt = row["prompt"]
        turns = (
            ChatFormat().as_messages({"messages": prompt})
            if isinstance(prompt, list)
            else [{"role": "user", "content": prompt}]
        )
        system = content_text(row.get("system"))
        if system and system.strip() and not any(t.get("role") == "system" for t in turns):
            turns.insert(0, {"role": "system", "content": system})
        return turns

    def answer(self, row: dict[str, Any]) -> str | None:
        """The row's reference answer, None when it gives none."""
        return reference_text(row.get("answer"))

    def check(self, row: dict[str, Any], mask_prompt: bool) -> list[str]:
        prompt = row["prompt"]
        errors: list[str] = []
        if isinstance(prompt, list) and prompt:
            errors = [e for i, turn in enumerate(prompt) for e in _turn_errors(f"prompt[{i}]", turn)]
            if not errors and prompt[-1].get("role") != "user":
                errors.append("the last turn of 'prompt' must be the user's: the model answers it")
        elif not isinstance(prompt, str):
            errors.append(f"'prompt' must be a string or a non-empty list of turns, got {_type_name(prompt)}")
        elif not prompt.strip():
            errors.append("'prompt' is empty; give the question the model answers")
        system = row.get("system")
        if system is not None and content_text(system) is None:
            errors.append(f"'system' must be a string, got {_type_name(system)}")
        if "answer" in row and row["answer"] is not None and self.answer(row) is None:
            errors.append(f"'answer' must be a string or a number, got {_type_name(row['answer'])}")
        return errors

    def char_length(self, row: dict[str, Any]) -> int:
        return sum(len(t.get("content") or "") for t in self.as_messages(row))

    def sample(self, row: dict[str, Any]) -> SampleText:
        turns = self.as_messages(row)
        system = next((t.get("content") or "" for t in turns if t.get("role") == "system"), "")
        prompt = next((t.get("content") or "" for t in reversed(turns) if t.get("role") == "user"), "")
        return SampleText(prompt, system, self.answer(row) or "")

    def preview(self, row: dict[str, Any], width: int = 240) -> dict[str, str]:
        sample = self.sample(row)
        shown = {"prompt": _cut(sample.prompt, width), "answer": _cut(sample.reference, width)}
        if sample.system:
            shown["system"] = _cut(sample.system, width)
        return shown


PROMPTS = PromptFormat()
