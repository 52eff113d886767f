"""The data intake's public face: check a dataset and report on it.

`check_data` reads, checks and (given a tokenizer) encodes a dataset, and
returns a `DataReport` for the GUI's dataset panel and `qlora-gui check-data`,
plus the encoded splits the trainer uses. It never raises for bad data.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from ..gc_policy import without_cyclic_gc
from ..train.config import default_of
from .chat_template import FALLBACK_TEMPLATE_DOC, has_chat_template, template_description
from .encode import EncodedSplit, encode_split
from .formats import FORMATS, format_named
from .intake import IntakeOptions, RawSplit, read_dataset
from .problems import Problem
from .rows import TurnsFormat

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


def _row_keys(raw: RawSplit) -> list[str]:
    """Each row's content in a canonical form (key order aside), for spotting repeats."""
    return [json.dumps(r, sort_keys=True, ensure_ascii=False, separators=(",", ":")) for r in raw.rows]


def _stats(raw: RawSplit, lengths: np.ndarray, unit: str, keys: list[str]) -> SplitReport:
    rep = SplitReport(raw.name, raw.file, raw.format, len(raw.rows), unit)
    if len(lengths):
        rep.min_len = int(lengths.min())
        rep.mean_len = float(lengths.mean())
        rep.p95_len = int(np.percentile(lengths, 95))
        rep.max_len = int(lengths.max())
        rep.lengths = lengths.tolist()
    rep.duplicate_rows = len(keys) - len(set(keys))
    if raw.format:
        rep.preview = [FORMATS[raw.format].preview(r) for r in raw.rows[:PREVIEW_ROWS]]
        rep.preview_lines = raw.lines[:PREVIEW_ROWS]
    return rep


def _template_warnings(name: str, enc: EncodedSplit) -> list[str]:
    out = [
        f"the chat template leaves out the {role} turn of {len(lines)} {name} row(s) (first: line {lines[0]}); "
        "the model trains without that text"
        for role, lines in enc.left_out.items()
    ]
    if enc.changed_lines:
        out.append(
            f"{len(enc.changed_lines)} {name} row(s) have an assistant turn that the chat template drops or "
            f"rewrites (first: line {enc.changed_lines[0]}): a dropped turn is not trained, a rewritten one is "
            "trained as the template prints it; check it in the token view"
        )
    if enc.reasoning_rows:
        out.append(
            f"in {enc.reasoning_rows} {name} row(s) the chat template leaves out the <think> reasoning of "
            "earlier assistant turns; only their answers are trained, as the model will see them"
        )
    if enc.unmarked_rows:
        out.append(
            f"{enc.unmarked_rows} {name} row(s) have an assistant turn with no end-of-turn token after it; "
            "the model will not learn where those answers end"
        )
    return out


def _unmasked_rows(enc: EncodedSplit) -> int:
    """Rows trained on every position after the first (which is never a target)."""
    return sum(len(m) > 1 and bool(m[1:].all()) for m in enc.trained)


def _encoded_warnings(report: DataReport, encoded: dict[str, EncodedSplit]) -> list[str]:
    out = []
    for name, enc in encoded.items():
        out.extend(_template_warnings(name, enc))
    # Completions only masks at least the prompt's tokens of a row that has one (a long answer may still make
    # most tokens trained: that is no sign of trouble). A row trained on every token is.
    unmasked = _unmasked_rows(encoded["train"]) if report.mask_prompt and "train" in encoded else 0
    if unmasked:
        out.append(
            f"completions only is on, yet {unmasked} training row(s) have no token masked: their prompts are "
            "trained as well; look at such a row in the token view (the Data tab, or "
            "`qlora-gui check-data PATH --model DIR --mask-prompt --show LINE`)"
        )
    return out


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
) -> DataCheck:
    """Read, check and, with a tokenizer, encode a dataset. Every problem is reported, none raised."""
    options = IntakeOptions(valid_fraction=valid_fraction, seed=seed, mask_prompt=mask_prompt, batch_size=batch_size)
    intake = read_dataset(path, options)
    problems = intake.problems
    warnings = list(intake.warnings)
    splits: dict[str, SplitReport] = {}
    encoded: dict[str, EncodedSplit] | None = None
    template = None
    keys = {name: _row_keys(raw) for name, raw in intake.splits.items()}  # made once: they cost like parsing

    if tokenizer is not None and problems.count == 0:
        if isinstance(format_named(intake.format), TurnsFormat):
            template = template_description(tokenizer)
            if not has_chat_template(tokenizer):
                warnings.append(
                    "the tokenizer has no chat template; prompt/completion and chat rows use the plain "
                    f"fallback '{FALLBACK_TEMPLATE_DOC}'"
                )
        encoded = {}
        for name, raw in intake.splits.items():
            enc = encode_split(raw, tokenizer, max_seq_length, mask_prompt, problems)
            encoded[name] = enc
            rep = _stats(raw, enc.full_lengths, "tokens", keys[name])
            rep.truncated, rep.no_target_rows = enc.truncated, enc.no_target_rows
            total = sum(len(t) for t in enc.tokens)
            rep.trained_share = sum(int(m.sum()) for m in enc.trained) / max(total, 1)
            splits[name] = rep
    else:
        for name, raw in intake.splits.items():
            if raw.format:
                lengths = np.fromiter(
                    (FORMATS[raw.format].char_length(r) for r in raw.rows), dtype=np.int64, count=len(raw.rows)
                )
                splits[name] = _stats(raw, lengths, "characters", keys[name])

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
        seen = set(keys["train"])
        for name in intake.splits:
            shared = sum(k in seen for k in keys[name]) if name != "train" else 0
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
        report.warnings.extend(_encoded_warnings(report, encoded))
        if problems.count:
            encoded = None
    return DataCheck(report, encoded, intake.splits)


def training_data(
    path: str, tokenizer: Any, max_seq_length: int, mask_prompt: bool, batch_size: int, valid_fraction: float, seed: int
) -> tuple[DataReport, dict[str, EncodedSplit], dict[str, RawSplit]]:
    """The report, encoded splits and checked rows to train on; DataError listing every problem when the data is
    not usable."""
    check = check_data(
        path,
        tokenizer,
        max_seq_length=max_seq_length,
        mask_prompt=mask_prompt,
        batch_size=batch_size,
        valid_fraction=valid_fraction,
        seed=seed,
    )
    if not check.report.usable or check.encoded is None:
        raise DataError(
            f"{check.report.source}: the data has {check.report.problem_count} problem(s); fix them and start again",
            check.report.problem_lines(),
        )
    return check.report, check.encoded, check.raw
