"""Every row format by name, and which one a row is."""

from __future__ import annotations

from typing import Any

from .preference_rows import CHAT_PREFERENCE, PREFERENCE, PreferenceFormat
from .prompt_rows import PROMPTS, PromptFormat
from .rows import CHAT, COMPLETIONS, TEXT, TextFormat, TurnsFormat
from .vision_rows import VISION

# Name -> format, in the order messages list them.
FORMATS: dict[str, TextFormat | TurnsFormat] = {
    f.name: f for f in (TEXT, COMPLETIONS, CHAT, PREFERENCE, CHAT_PREFERENCE, PROMPTS, VISION)
}


def detect_format(row: dict[str, Any]) -> TextFormat | TurnsFormat | None:
    """The format a row belongs to: preference pairs first (their 'messages' are only the prompt), then turns
    with pictures (mlx-vlm's rows), then mlx-lm's precedence: messages, then prompt+completion, then text; a
    prompt alone (with an optional answer and system turn) is GRPO's."""
    return next(
        (f for f in (CHAT_PREFERENCE, PREFERENCE, VISION, CHAT, COMPLETIONS, PROMPTS, TEXT) if f.matches(row)), None
    )


def format_named(name: str | None) -> TextFormat | TurnsFormat | None:
    """The format a report, split or saved config names; None for no rows or an unknown name."""
    return FORMATS.get(name or "")


def is_preference(name: str | None) -> bool:
    """The rows are preference pairs (DPO and ORPO train on them)."""
    return isinstance(format_named(name), PreferenceFormat)


def is_prompts(name: str | None) -> bool:
    """The rows are prompts to answer (GRPO learns from rewards on its own answers to them)."""
    return isinstance(format_named(name), PromptFormat)
