"""Sample answers while training: a few fixed prompts, answered at the start, at each validation and at the end.

The prompts come from a file the user names (rows in any data format; a row's answer is its reference) or, by
default, from rows of the validation split. The model being trained answers them greedily, in eval mode, with
the chat template training used (the raw prompt for text rows), so the answers show what the adapter has learnt
so far. Greedy decoding draws no random numbers, and each step sets its own seed, so answering leaves the
training run exactly as it would have been without them.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any, Protocol

import mlx.nn as nn

from ..data.chat_template import rejection_hint
from ..data.formats import detect_format
from ..data.intake import RawSplit
from ..data.json_rows import read_rows
from ..data.problems import Problems
from ..data.rows import content_text
from ..errors import DataError
from ..events import SampleAnswers
from ..inference.generation import format_prompt, stream_text
from ..inference.samples import PromptSample, sample_from_row
from ..inference.sampling import SamplingSettings


def prompts_from_file(path: str | Path, limit: int) -> list[PromptSample]:
    """The first `limit` rows of a file as prompts. A row may be any training row or just {"prompt": ...};
    DataError naming each bad row's line when the file cannot be used."""
    path = Path(path)
    name, problems = str(path), Problems()
    prompts: list[PromptSample] = []
    if not path.is_file():
        raise DataError(f"{path}: the sample prompts file does not exist; pick another or clear the setting", [])
    for line, row in read_rows(path, name, problems):
        if len(prompts) == limit:
            break
        if isinstance(row, dict) and set(row) <= {"prompt", "system"} and content_text(row.get("prompt")):
            prompts.append(PromptSample(row["prompt"], content_text(row.get("system")) or "", "", name, line))
            continue
        fmt = detect_format(row) if isinstance(row, dict) else None
        errors = fmt.check(row, False) if fmt and isinstance(row, dict) else ['give a {"prompt": ...} row']
        if errors:
            problems.add(name, line, "not a sample prompt: " + "; ".join(errors))
        elif isinstance(row, dict) and fmt is not None:
            prompts.append(sample_from_row(row, fmt.name, name, line))
    if problems.count or not prompts:
        raise DataError(
            f"{path}: the sample prompts file has {problems.count or 'no'} problem(s)"
            + ("" if prompts or problems.count else " and no rows"),
            [str(p) for p in problems.items],
        )
    return prompts


def prompts_from_split(split: RawSplit, count: int, seed: int) -> list[PromptSample]:
    """`count` rows of a split chosen by the seed (the same rows on every resume), in file order; rows that ask
    the same question (preference pairs often share a prompt) count once."""
    if split.format is None or not split.rows:
        return []
    order = list(range(len(split.rows)))
    random.Random(seed).shuffle(order)
    chosen: dict[tuple[str, str], PromptSample] = {}
    for i in order:
        sample = sample_from_row(split.rows[i], split.format, split.file, split.lines[i])
        chosen.setdefault((sample.system, sample.prompt), sample)
        if len(chosen) == count:
            break
    return sorted(chosen.values(), key=lambda s: s.line)


def choose_prompts(
    count: int, prompts_file: str, splits: dict[str, RawSplit], seed: int
) -> tuple[list[PromptSample], str]:
    """The run's sample prompts (from the file, else the validation split) and a line for the run's log."""
    if count == 0:
        return [], ""
    if prompts_file:
        prompts = prompts_from_file(prompts_file, count)
        return prompts, f"sample answers: {len(prompts)} prompt(s) from {prompts_file}"
    valid = splits.get("valid")
    prompts = prompts_from_split(valid, count, seed) if valid is not None else []
    if not prompts:
        return [], "sample answers: none, since there is no validation split; name a prompts file to have them"
    lines = ", ".join(str(p.line) for p in prompts)
    return prompts, f"sample answers: {len(prompts)} validation row(s), {prompts[0].file} line(s) {lines}"


class Answerer(Protocol):
    """What the loop asks for sample answers (text rows: SampleAnswerer; picture rows: vision_samples.py)."""

    def answer(self, model: nn.Module, step: int) -> SampleAnswers: ...


class SampleAnswerer:
    """Answers the chosen prompts with the model as it is at each call. Made before any weights load: a prompt
    the chat template refuses is a problem on its line then, not a failure in the middle of the run."""

    def __init__(self, tokenizer: Any, prompts: list[PromptSample], chat: bool, max_tokens: int):
        self.tokenizer, self.prompts = tokenizer, prompts
        self.texts, problems = [], []
        for p in prompts:
            try:
                self.texts.append(format_prompt(tokenizer, p.prompt, p.system, chat))
            except Exception as e:  # a Jinja template can raise anything
                roles = {"user", "system"} if p.system.strip() else {"user"}
                problems.append(
                    f"{p.file}:{p.line}: the model's chat template rejected this sample prompt ({e}): "
                    f"{rejection_hint(str(e), roles, tokenizer)}"
                )
        if problems:
            raise DataError(f"{len(problems)} sample prompt(s) cannot be put to this model", problems)
        self.settings = SamplingSettings(temperature=0.0, max_tokens=max_tokens)

    def answer(self, model: nn.Module, step: int) -> SampleAnswers:
        t0 = time.perf_counter()
        training = model.training
        model.eval()  # no dropout, and no gradient checkpointing around the cache
        answers = []
        try:
            for p, text in zip(self.prompts, self.texts, strict=True):
                out, tokens, reason = "", 0, ""
                for update in stream_text(model, self.tokenizer, text, self.settings):
                    out += update.text
                    tokens, reason = update.tokens, update.finish_reason or reason
                answers.append(
                    {
                        "prompt": p.prompt,
                        "reference": p.reference,
                        "answer": out,
                        "tokens": tokens,
                        "finish": reason,
                        "source": f"{p.file}:{p.line}",
                    }
                )
        finally:
            model.train(training)
        return SampleAnswers(step=step, answers=answers, seconds=time.perf_counter() - t0)
