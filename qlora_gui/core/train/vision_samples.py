"""Sample answers of a vision run: validation rows' pictures and questions, answered greedily by the model as it
is at the start, at each validation and at the end (as `sample_answers.py` does for text rows)."""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import mlx.nn as nn

from ..data.intake import RawSplit
from ..data.vision_rows import VISION, image_paths
from ..events import SampleAnswers
from ..inference.samples import PromptSample, sample_from_row
from ..inference.vision_answer import VisionModel, stream_answer


def choose_picture_prompts(
    count: int, prompts_file: str, splits: dict[str, RawSplit], seed: int
) -> tuple[list[tuple[PromptSample, list[str]]], str]:
    """Up to `count` validation rows (chosen by the seed) with their pictures, and a line for the run's log."""
    if count == 0:
        return [], ""
    valid = splits.get("valid")
    if prompts_file or valid is None:
        why = "a prompts file holds no pictures" if prompts_file else "there is no validation split"
        return [], f"sample answers: none, since {why}; vision runs answer validation rows"
    order = list(range(len(valid.rows)))
    random.Random(seed).shuffle(order)  # the same rows on every resume; the same question may ask of each
    chosen = []
    for i in sorted(order[:count]):
        row = valid.rows[i]
        sample = sample_from_row(row, VISION.name, valid.file, valid.lines[i])
        chosen.append((sample, [str(path) for path in image_paths(row, Path(valid.file).parent)]))
    lines = ", ".join(str(p.line) for p, _ in chosen)
    return chosen, f"sample answers: {len(chosen)} validation row(s) with pictures, {valid.file} line(s) {lines}"


class PictureAnswerer:
    """The chosen rows' questions about their pictures, answered with the model as it is at each call."""

    def __init__(self, processor: Any, family: str, config: dict, prompts: list, max_tokens: int):
        self.processor, self.family, self.config = processor, family, config
        self.prompts, self.max_tokens = prompts, max_tokens

    def answer(self, model: nn.Module, step: int) -> SampleAnswers:
        t0 = time.perf_counter()
        training = model.training
        model.eval()
        vm = VisionModel(model, self.processor, self.family, self.config)
        answers = []
        try:
            for p, images in self.prompts:
                pieces = list(stream_answer(vm, images, p.prompt, self.max_tokens))
                answers.append(
                    {
                        "prompt": p.prompt,
                        "reference": p.reference,
                        "answer": "".join(pieces),
                        "tokens": len(pieces),
                        "finish": "length" if len(pieces) >= self.max_tokens else "stop",
                        "source": f"{p.file}:{p.line}",
                    }
                )
        finally:
            model.train(training)
        return SampleAnswers(step, answers, time.perf_counter() - t0)
