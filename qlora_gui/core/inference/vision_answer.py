"""Answers of a vision-language model to a picture and a question, through the same forward training uses.

The prompt is the model's chat template with one picture marker per image before the question, expanded by
its processor exactly as training expands rows. Each new token reruns the forward on the whole sequence under
the causal mask of `vision_model.vision_logits` (no key-value cache): what was trained is what answers.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import mlx.core as mx
import numpy as np

from ..data.vision_encode import open_images, text_tokenizer
from ..model.vision_model import (
    QWEN_FAMILIES,
    add_vision_adapters_from,
    load_processor,
    load_vision_base,
    vision_family,
    vision_logits,
)
from .adapters import base_view
from .generation import SIDES, GenerationUpdate
from .sampling import SamplingSettings


@dataclass
class VisionModel:
    """A loaded vision-language model (with its adapter, when one was given) and its processor."""

    model: Any
    processor: Any
    family: str
    config: dict[str, Any]


def stop_tokens(processor: Any, config: dict[str, Any]) -> set[int]:
    """The ids that end an answer: the tokenizer's end of text and the model's end tokens (Gemma 3 ends a turn
    with <end_of_turn>, which its config names)."""
    stops = {processor.tokenizer.eos_token_id}
    for where in (config, config.get("text_config") or {}):
        value = where.get("eos_token_id")
        stops |= set(value) if isinstance(value, list) else {value}
    return {int(s) for s in stops if s is not None}


def load_vision_model(model: str | Path, adapter_path: str | Path | None = None) -> VisionModel:
    """The base model, and the run's adapter on it when `adapter_path` names a run folder or adapter file."""
    path = Path(model)
    family = vision_family(path)
    processor = load_processor(path)
    loaded = load_vision_base(path, processor)
    if adapter_path is not None:
        add_vision_adapters_from(loaded.model, Path(adapter_path))
    loaded.model.eval()
    return VisionModel(loaded.model, processor, family, loaded.config)


def prompt_messages(prompt: str, images: int, system: str = "") -> list[dict[str, Any]]:
    content: list[dict[str, Any]] = [{"type": "image"}] * images + [{"type": "text", "text": prompt}]
    turns: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
    return turns + [{"role": "user", "content": content}]


def stream_answer(
    vm: VisionModel, images: list[str | Path], prompt: str, max_tokens: int = 64, temperature: float = 0.0
) -> Generator[str, None, None]:
    """The answer's text, piece by piece; greedy unless a temperature is given."""
    tokenizer = text_tokenizer(vm.processor)
    text = tokenizer.apply_chat_template(
        prompt_messages(prompt, len(images)), add_generation_prompt=True, tokenize=False
    )
    pictures = open_images([str(p) for p in images]) if images else None
    out = vm.processor(text=[text], images=pictures, add_special_tokens=False, return_tensors="np")
    ids = [int(t) for t in np.asarray(out["input_ids"]).reshape(-1)]
    pixels = mx.array(np.asarray(out["pixel_values"], dtype=np.float32)) if pictures else None
    grid = mx.array(np.asarray(out["image_grid_thw"])) if pictures and vm.family in QWEN_FAMILIES else None
    stops = stop_tokens(vm.processor, vm.config)
    answer: list[int] = []
    shown = ""
    for _ in range(max_tokens):
        logits = vision_logits(vm.model, vm.family, mx.array([ids + answer]), pixels, grid)[0, -1]
        if temperature > 0:
            chosen = mx.random.categorical(logits.astype(mx.float32) / temperature)
        else:
            chosen = mx.argmax(logits)
        token = cast(int, chosen.item())
        if token in stops:
            break
        answer.append(token)
        full = tokenizer.decode(answer)
        if not full.endswith("\ufffd"):  # a character cut in the middle waits for its next byte
            yield full[len(shown) :]
            shown = full


def answer(vm: VisionModel, images: list[str | Path], prompt: str, max_tokens: int = 64) -> str:
    return "".join(stream_answer(vm, images, prompt, max_tokens))


def prompt_text(vm: VisionModel, prompt: str, images: int) -> str:
    """The prompt as the model sees it, with one picture marker per image (before the processor expands it)."""
    return str(
        text_tokenizer(vm.processor).apply_chat_template(
            prompt_messages(prompt, images), add_generation_prompt=True, tokenize=False
        )
    )


def answer_side_by_side(
    vm: VisionModel,
    images: list[str | Path],
    prompt: str,
    settings: SamplingSettings,
    on_update: Callable[[GenerationUpdate], None],
    should_stop: Callable[[], bool] = lambda: False,
) -> dict[str, str]:
    """The base and the adapter answer the same picture and prompt, piece by piece in turn (as the text
    playground's sides do); each side's stream runs only inside its own view of the model."""
    if settings.seed is not None:
        mx.random.seed(settings.seed)
    streams = {side: stream_answer(vm, images, prompt, settings.max_tokens, settings.temperature) for side in SIDES}
    texts = {side: "" for side in SIDES}
    counts = {side: 0 for side in SIDES}
    started = time.perf_counter()
    live = list(SIDES)
    while live:
        for side in list(live):
            if should_stop():
                for s in live:
                    streams[s].close()
                    on_update(GenerationUpdate(s, "", counts[s], 0.0, True, "stopped"))
                return texts
            with base_view(vm.model) if side == "base" else contextlib.nullcontext():
                piece = next(streams[side], None)
            rate = counts[side] / max(time.perf_counter() - started, 1e-9)
            if piece is None:
                live.remove(side)
                reason = "length" if counts[side] >= settings.max_tokens else "stop"
                on_update(GenerationUpdate(side, "", counts[side], rate, True, reason))
                continue
            counts[side] += 1
            texts[side] += piece
            on_update(GenerationUpdate(side, piece, counts[side], rate))
    return texts
