"""The data intake's public face: check a dataset and report on it.

`check_data` reads, checks and (given a tokenizer) encodes a dataset, and
returns a `DataReport` for the GUI's dataset panel and `qlora-gui check-data`,
plus the encoded splits the trainer uses. It never raises for bad data.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..config import default_of
from ..errors import DataError
from ..gc_policy import without_cyclic_gc
from . import token_cache
from .chat_template import FALLBACK_TEMPLATE_DOC, has_chat_template, template_description
from .encode import EncodedSplit
from .encoded_warnings import encoded_warnings
from .formats import FORMATS, format_named
from .intake import IntakeOptions, RawSplit, read_dataset
from .json_rows import OnProgress
from .problems import Problem
from .rows import TurnsFormat
from .split_encoding import encode_split
from .token_cache import cache_key
from .vision_encode import encode_vision_split
from .vision_rows import VISION

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
    duplicate_rows: int = 0  # rows equal to an earlier row of the same split
    trained_share: float | None = None  # trained tokens / all tokens, once a tokenizer is known
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
    template: str | None = None  # which chat template rendered the rows (None for text rows or no tokenizer)

    @property
    def can_mask_prompt(self) -> bool:
        """The rows have prompts that "train on completions only" can leave out (not plain text)."""
        fmt = format_named(self.format)
        return fmt is None or fmt.can_mask_prompt

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
            if self.template:
                out.append(f"Template: {self.template}")
            out.append(
                f"  {'split':<6} {'rows':>7}  {unit + ' min/mean/p95/max':<28} {'trained':>7} "
                f"{'truncated':>9} {'no target':>9} {'duplicate':>9}  file"
            )
            for s in self.splits.values():
                stats = f"{s.min_len}/{s.mean_len:.1f}/{s.p95_len}/{s.max_len}"
                share = f"{s.trained_share:.1%}" if s.trained_share is not None else "-"
                out.append(
                    f"  {s.name:<6} {s.rows:>7}  {stats:<28} {share:>7} {s.truncated:>9} "
                    f"{s.no_target_rows:>9} {s.duplicate_rows:>9}  {s.file}"
                )
            train = self.splits.get("train")
            if train and train.preview:
                out.append("Preview (train):")
                for line, row in zip(train.preview_lines, train.preview, strict=True):
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
    raw: dict[str, RawSplit] = field(default_factory=dict)  # the checked rows, for the token view


def _stats(raw: RawSplit, lengths: np.ndarray, unit: str) -> SplitReport:
    rep = SplitReport(raw.name, raw.file, raw.format, len(raw.rows), unit)
    if len(lengths):
        rep.min_len = int(lengths.min())
        rep.mean_len = float(lengths.mean())
        rep.p95_len = int(np.percentile(lengths, 95))
        rep.max_len = int(lengths.max())
        rep.lengths = lengths.tolist()
    rep.duplicate_rows = len(raw.keys) - len(np.unique(raw.keys))
    if raw.format:
        rep.preview = [FORMATS[raw.format].preview(r) for r in raw.rows[:PREVIEW_ROWS]]
        rep.preview_lines = raw.lines[:PREVIEW_ROWS]
    return rep


@without_cyclic_gc
def check_data(
    path: str | Path,
    tokenizer: Any = None,
    *,
    max_seq_length: int = default_of("max_seq_length"),
    mask_prompt: bool = default_of("mask_prompt"),
    batch_size: int = 1,
    valid_fraction: float = default_of("valid_fraction"),
    seed: int = default_of("seed"),
    on_progress: OnProgress | None = None,
    vision: bool | None = None,
) -> DataCheck:
    """Read, check and, with a tokenizer, encode a dataset. Every problem is reported, none raised. The result
    is kept in the token cache: the same data, tokenizer and settings again read it back.

    `vision`: whether the model sees pictures. None means a text model when a tokenizer is given (rows with
    pictures are refused) and no model yet without one (picture rows are checked as a vision model takes them).
    A vision model's tokenizer is its processor (vision_encode.py); its rows are not cached, since the
    pictures they name may change."""
    if vision is None and tokenizer is not None:
        vision = False
    settings: dict[str, Any] = dict(max_seq_length=max_seq_length, mask_prompt=mask_prompt, batch_size=batch_size)
    settings.update(valid_fraction=valid_fraction, seed=seed, vision=vision)
    key = cache_key(path, tokenizer, settings) if not vision else None
    kept = token_cache.load(key) if key else None
    if kept is not None:
        return DataCheck(kept["report"], kept["encoded"] or None, kept["raw"])
    folder = token_cache.staging_folder(key) if key else None
    try:
        check = _check(path, tokenizer, folder, on_progress, **settings)
    except BaseException:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
        raise
    if key and folder is not None:
        token_cache.store(key, folder, check)
    return check


def _check(
    path: str | Path,
    tokenizer: Any,
    folder: Path | None,
    on_progress: OnProgress | None,
    *,
    max_seq_length: int,
    mask_prompt: bool,
    batch_size: int,
    valid_fraction: float,
    seed: int,
    vision: bool | None,
) -> DataCheck:
    options = IntakeOptions(valid_fraction, seed, mask_prompt, batch_size, vision)
    intake = read_dataset(path, options, on_progress)
    problems = intake.problems
    warnings = list(intake.warnings)
    splits: dict[str, SplitReport] = {}
    encoded: dict[str, EncodedSplit] | None = None
    template = None

    if tokenizer is not None and problems.count == 0 and intake.format == VISION.name:
        template = template_description(tokenizer.tokenizer)  # a vision model's tokenizer is its processor
        encoded = {}
        for name, raw in intake.splits.items():
            pictures = encode_vision_split(raw, tokenizer, max_seq_length, mask_prompt, problems)
            encoded[name] = pictures
            rep = _stats(raw, pictures.full_lengths, "tokens")
            rep.truncated, rep.no_target_rows = pictures.truncated, pictures.no_target_rows
            rep.trained_share = pictures.trained_tokens / max(pictures.tokens.total, 1)
            splits[name] = rep
    elif tokenizer is not None and problems.count == 0:
        if isinstance(format_named(intake.format), TurnsFormat):
            template = template_description(tokenizer)
            if not has_chat_template(tokenizer):
                warnings.append(
                    "the tokenizer has no chat template; prompt/completion and chat rows use the plain "
                    f"fallback '{FALLBACK_TEMPLATE_DOC}'"
                )
        encoded = {}
        for name, raw in intake.splits.items():
            enc = encode_split(raw, tokenizer, max_seq_length, mask_prompt, problems, folder, on_progress)
            encoded[name] = enc
            rep = _stats(raw, enc.full_lengths, "tokens")
            rep.truncated, rep.no_target_rows = enc.truncated, enc.no_target_rows
            rep.trained_share = enc.trained_tokens / max(enc.tokens.total, 1)
            splits[name] = rep
    else:
        for name, raw in intake.splits.items():
            if raw.format:
                splits[name] = _stats(raw, raw.char_lengths, "characters")

    for rep in splits.values():
        if rep.truncated:
            warnings.append(
                f"{rep.truncated} {rep.name} row(s) are longer than max_seq_length={max_seq_length} "
                f"and will be truncated (longest: {rep.max_len} tokens)"
            )
        if rep.no_target_rows:
            warnings.append(
                f"{rep.no_target_rows} {rep.name} row(s) have no trained token (the prompt fills "
                "max_seq_length, or the template dropped the answer); they add nothing to training"
            )
        if rep.duplicate_rows:
            warnings.append(
                f"{rep.duplicate_rows} {rep.name} row(s) repeat an earlier row of the same split; "
                "they weigh those rows more"
            )
    if "train" in intake.splits:
        seen = intake.splits["train"].keys
        for name, raw in intake.splits.items():
            shared = int(np.isin(raw.keys, seen).sum()) if name != "train" else 0
            if shared:
                warnings.append(
                    f"{shared} {name} row(s) also appear in train; their {name} loss overstates "
                    "how well the model generalizes"
                )

    file_order: dict[str, int] = {}
    for p in problems.items:
        file_order.setdefault(p.file, len(file_order))
    ordered = sorted(problems.items, key=lambda p: (file_order[p.file], p.line))
    report = DataReport(
        intake.source, intake.format, splits, ordered, problems.count, warnings, max_seq_length, mask_prompt, template
    )
    if encoded is not None:
        report.warnings.extend(encoded_warnings(encoded, mask_prompt))
        if problems.count:
            encoded = None
    return DataCheck(report, encoded, intake.splits)


def training_data(
    path: str,
    tokenizer: Any,
    max_seq_length: int,
    mask_prompt: bool,
    batch_size: int,
    valid_fraction: float,
    seed: int,
    vision: bool | None = None,
) -> tuple[DataReport, dict[str, EncodedSplit], dict[str, RawSplit]]:
    """The report, encoded splits and checked rows to train on; DataError listing every problem when the data is
    not usable. A vision model's tokenizer is its processor (`vision=True`)."""
    check = check_data(
        path,
        tokenizer,
        max_seq_length=max_seq_length,
        mask_prompt=mask_prompt,
        batch_size=batch_size,
        valid_fraction=valid_fraction,
        seed=seed,
        vision=vision,
    )
    if not check.report.usable or check.encoded is None:
        raise DataError(
            f"{check.report.source}: the data has {check.report.problem_count} problem(s); fix them and start again",
            check.report.problem_lines(),
        )
    return check.report, check.encoded, check.raw
