"""Text generation with mlx-lm's `stream_generate`: one model, or base and adapter side by side.

Both sides get the same prompt and the same sampling settings, and each has its
own random key made from the seed, so a side's output depends only on (model,
prompt, settings) and not on the other side running next to it.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import mlx.core as mx
import mlx.nn as nn

from ..data.chat_template import has_chat_template, render_chat
from ..data.encode import encode_chat_text
from .adapters import base_view
from .sampling import SamplingSettings

SIDES = ("base", "adapter")


@dataclass
class GenerationUpdate:
    """A piece of one side's output; `done` comes once per side with the finish reason."""

    side: str
    text: str
    tokens: int
    tokens_per_sec: float
    done: bool = False
    finish_reason: str = ""  # "stop" (end of text), "length" (max tokens), "stopped" (by the person)


def format_prompt(
    tokenizer: Any,
    prompt: str,
    system: str = "",
    use_template: bool = True,
    history: Sequence[dict[str, str]] = (),
) -> str:
    """The text the model sees: the chat template (or the fallback) as in training, or the raw prompt. With
    `history` (earlier user and assistant turns) the prompt continues that conversation."""
    if not use_template:
        return prompt
    messages = (
        ([{"role": "system", "content": system}] if system.strip() else [])
        + list(history)
        + [{"role": "user", "content": prompt}]
    )
    return render_chat(tokenizer, messages, add_generation_prompt=True)


def template_note(tokenizer: Any, use_template: bool) -> str:
    if not use_template:
        return "raw prompt (the run trained on text rows)"
    return "the model's chat template" if has_chat_template(tokenizer) else "the plain fallback template"


def seeded_sampler(settings: SamplingSettings) -> Callable[[mx.array], mx.array]:
    """Temperature and top-p sampling with its own key chain (greedy at temperature 0)."""
    from mlx_lm.sample_utils import apply_top_p

    if settings.temperature <= 0:
        return lambda logprobs: mx.argmax(logprobs, axis=-1)
    key = mx.random.key(settings.seed)
    inv_temp = 1.0 / settings.temperature

    def sample(logprobs: mx.array) -> mx.array:
        nonlocal key
        key, sub = mx.random.split(key)
        if 0 < settings.top_p < 1:
            logprobs = apply_top_p(logprobs, settings.top_p)
        return mx.random.categorical(logprobs * inv_temp, key=sub)

    return sample


def stream_text(
    model: nn.Module, tokenizer: Any, prompt_text: str, settings: SamplingSettings, side: str = "adapter"
) -> Generator[GenerationUpdate, None, None]:
    """Stream one model's answer; the last update has done=True and the finish reason."""
    from mlx_lm import stream_generate

    tokens, busy = 0, 0.0
    reason = "length"
    gen = stream_generate(
        model,
        tokenizer,
        encode_chat_text(tokenizer, prompt_text),
        max_tokens=settings.max_tokens,
        sampler=seeded_sampler(settings),
    )
    while True:
        t0 = time.perf_counter()
        try:
            response = next(gen)
        except StopIteration:
            break
        busy += time.perf_counter() - t0  # time in this side's own steps, not the other side's
        tokens = response.generation_tokens  # counted as mlx-lm counts them (an end-of-text token included)
        if response.finish_reason is not None:
            reason = response.finish_reason
        if response.text:
            yield GenerationUpdate(side, response.text, tokens, tokens / busy if busy else 0.0)
    yield GenerationUpdate(side, "", tokens, tokens / busy if busy else 0.0, True, reason)


def generate_side_by_side(
    model: nn.Module,
    tokenizer: Any,
    prompt_text: str | Mapping[str, str],
    settings: SamplingSettings,
    on_update: Callable[[GenerationUpdate], None],
    should_stop: Callable[[], bool] = lambda: False,
    sides: tuple[str, ...] = SIDES,
) -> dict[str, str]:
    """Alternate token by token between the base and the adapter; returns each side's full text. A mapping
    gives each side its own prompt text (a conversation in which each side kept its own answers).

    Each side's generator only runs inside its own view of the model, so the base
    side always computes with the frozen layers and the adapter side with the adapter.
    """
    texts_in = {side: prompt_text if isinstance(prompt_text, str) else prompt_text[side] for side in sides}
    streams = {side: stream_text(model, tokenizer, texts_in[side], settings, side) for side in sides}
    texts = {side: "" for side in sides}
    last = {side: GenerationUpdate(side, "", 0, 0.0) for side in sides}
    live = list(sides)
    while live:
        for side in list(live):
            if should_stop():
                for s in live:
                    streams[s].close()
                    on_update(GenerationUpdate(s, "", last[s].tokens, last[s].tokens_per_sec, True, "stopped"))
                return texts
            with base_view(model) if side == "base" else contextlib.nullcontext():
                update = next(streams[side])
            texts[side] += update.text
            last[side] = update
            on_update(update)
            if update.done:
                live.remove(side)
    return texts
