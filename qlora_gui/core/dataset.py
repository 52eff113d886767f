"""The data intake's public face: check a dataset and report on it.

`check_data` reads, checks and (given a tokenizer) encodes a dataset, and
returns a `DataReport` for the GUI's dataset panel and `qlora-gui check-data`,
plus the encoded splits the trainer uses. It never raises for bad data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .encode import FALLBACK_TEMPLATE_DOC, EncodedSplit, encode_split, has_chat_template
from .intake import IntakeOptions, Problem, RawSplit, read_dataset
from .rows import char_length, preview

MAX_LISTED_PROBLEMS = 20
PREVIEW_ROWS = 5


@dataclass
class SplitReport:
    name: str
    file: str
    format: str | None
    rows: int
    unit: str  # "tokens" once a tokenizer is known, "characters" before
    min_len: int = 0
    mean_len: float = 0.0
    p95_len: int = 0
    max_len: int = 0
    truncated: int = 0
    no_target_rows: int = 0
    trained_share: float | None = None  # with completions-only: trained tokens / all tokens
    preview: list[dict[str, str]] = field(default_factory=list)
    preview_lines: list[int] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)


@dataclass
class DataReport:
    source: str
    format: str | None
    splits: dict[str, SplitReport]
    problems: list[Problem]
    problem_count: int
    warnings: list[str]
    max_seq_length: int
    mask_prompt: bool

    @property
    def usable(self) -> bool:
        return self.problem_count == 0 and "train" in self.splits

    def problem_lines(self, limit: int = MAX_LISTED_PROBLEMS) -> list[str]:
        lines = [str(p) for p in self.problems[:limit]]
        if self.problem_count > limit:
            lines.append(f"… and {self.problem_count - limit} more problem(s)")
        return lines

    def to_text(self) -> str:
        out = [f"Dataset: {self.source}" + (f"  (format: {self.format})" if self.format else "")]
        if self.splits:
            unit = next(iter(self.splits.values())).unit
            out.append(f"  {'split':<6} {'rows':>7}  {unit + ' min/mean/p95/max':<28} {'truncated':>9}  file")
            for s in self.splits.values():
                stats = f"{s.min_len}/{s.mean_len:.1f}/{s.p95_len}/{s.max_len}"
                out.append(f"  {s.name:<6} {s.rows:>7}  {stats:<28} {s.truncated:>9}  {s.file}")
                if s.trained_share is not None:
                    out.append(f"         trained on {s.trained_share:.1%} of tokens (completions only)")
            train = self.splits.get("train")
            if train and train.preview:
                out.append("Preview (train):")
                for line, row in zip(train.preview_lines, train.preview):
                    shown = " | ".join(f"{k}: {v}" for k, v in row.items())
                    out.append(f"  line {line}: {shown[:160]}")
        if self.warnings:
            out.append("Warnings:")
            out.extend(f"  - {w}" for w in self.warnings)
        if self.problem_count:
            out.append(f"Problems ({self.problem_count}); the data is not usable until they are fixed:")
            out.extend(self.problem_lines())
        else:
            out.append(f"OK: {self.splits['train'].rows} training rows ready." if "train" in self.splits else "")
        return "\n".join(x for x in out if x)


@dataclass
class DataCheck:
    report: DataReport
    encoded: dict[str, EncodedSplit] | None  # None when no tokenizer was given or the data is unusable


def _stats(raw: RawSplit, lengths: np.ndarray, unit: str) -> SplitReport:
    rep = SplitReport(raw.name, raw.file, raw.format, len(raw.rows), unit)
    if len(lengths):
        rep.min_len = int(lengths.min())
        rep.mean_len = float(lengths.mean())
        rep.p95_len = int(np.percentile(lengths, 95))
        rep.max_len = int(lengths.max())
        rep.lengths = lengths.tolist()
    if raw.format:
        rep.preview = [preview(r, raw.format) for r in raw.rows[:PREVIEW_ROWS]]
        rep.preview_lines = raw.lines[:PREVIEW_ROWS]
    return rep


def check_data(
    path: str | Path,
    tokenizer: Any = None,
    *,
    max_seq_length: int = 2048,
    mask_prompt: bool = False,
    batch_size: int = 1,
    valid_fraction: float = 0.1,
    seed: int = 0,
) -> DataCheck:
    """Read, check and, with a tokenizer, encode a dataset. Every problem is reported, none raised."""
    options = IntakeOptions(valid_fraction=valid_fraction, seed=seed, mask_prompt=mask_prompt,
                            batch_size=batch_size)
    intake = read_dataset(path, options)
    problems = intake.problems
    warnings = list(intake.warnings)
    splits: dict[str, SplitReport] = {}
    encoded: dict[str, EncodedSplit] | None = None

    if tokenizer is not None and problems.count == 0:
        if intake.format in ("chat", "completions") and not has_chat_template(tokenizer):
            warnings.append("the tokenizer has no chat template; prompt/completion and chat rows use the plain "
                            f"fallback '{FALLBACK_TEMPLATE_DOC}'")
        encoded = {}
        for name, raw in intake.splits.items():
            enc = encode_split(raw, tokenizer, max_seq_length, mask_prompt, problems)
            encoded[name] = enc
            rep = _stats(raw, enc.full_lengths, "tokens")
            rep.truncated, rep.no_target_rows = enc.truncated, enc.no_target_rows
            if mask_prompt:
                total = sum(len(t) for t in enc.tokens)
                rep.trained_share = sum(int(m.sum()) for m in enc.trained) / max(total, 1)
            splits[name] = rep
        if problems.count:
            encoded = None
    else:
        for name, raw in intake.splits.items():
            if raw.format:
                lengths = np.fromiter((char_length(r, raw.format) for r in raw.rows), dtype=np.int64,
                                      count=len(raw.rows))
                splits[name] = _stats(raw, lengths, "characters")

    for rep in splits.values():
        if rep.truncated:
            warnings.append(f"{rep.truncated} {rep.name} row(s) are longer than max_seq_length={max_seq_length} "
                            f"and will be truncated (longest: {rep.max_len} tokens)")
        if rep.no_target_rows:
            warnings.append(f"{rep.no_target_rows} {rep.name} row(s) have no trained tokens left after "
                            "truncation (the prompt fills max_seq_length); they add nothing to training")

    file_order: dict[str, int] = {}
    for p in problems.items:
        file_order.setdefault(p.file, len(file_order))
    ordered = sorted(problems.items, key=lambda p: (file_order[p.file], p.line))
    report = DataReport(intake.source, intake.format, splits, ordered, problems.count, warnings,
                        max_seq_length, mask_prompt)
    return DataCheck(report, encoded)
