"""Earlier runs' events, curves and sample answers, read back from their metrics.jsonl.

The one reader of metrics.jsonl: every line comes back as the event the trainer wrote (events.event_from_row),
never as a dict looked at by its "kind"."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ..events import Event, Recovered, RunStarted, SampleAnswers, StepReport, ValidationResult, parse_event_line
from .run_folder import RunFolder


@dataclass
class RunCurves:
    steps: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    val_steps: list[int] = field(default_factory=list)
    val_losses: list[float] = field(default_factory=list)


def read_events(run_dir: Path) -> list[Event]:
    """The run's events, in order; a line cut short by a crash, or of a kind this version does not know, left out."""
    return [e for e in map(parse_event_line, metrics_lines(RunFolder(run_dir))) if e is not None]


def sample_answers_of(events: Iterable[Event]) -> list[SampleAnswers]:
    return [e for e in events if isinstance(e, SampleAnswers) and isinstance(e.answers, list)]


def surviving_events(events: Iterable[Event], up_to_step: int | None = None) -> list[Event]:
    """A run's events along its line as it stands: the reports of steps it went back over (a resume from an earlier
    checkpoint, a recovery after a divergence) left out; with `up_to_step`, none after it (a run resumed from that
    step's checkpoint shows what led there, never the steps its last attempt went on to and abandoned)."""
    kept: list[Event] = []
    for e in events:
        back = e.start_step if isinstance(e, RunStarted) else e.back_to if isinstance(e, Recovered) else None
        if isinstance(back, int):
            kept = [x for x in kept if not isinstance(getattr(x, "step", None), int) or x.step <= back]  # type: ignore[attr-defined]
        kept.append(e)
    if up_to_step is not None:
        kept = [x for x in kept if not isinstance(getattr(x, "step", None), int) or x.step <= up_to_step]  # type: ignore[attr-defined]
    return kept


def read_sample_answers(run_dir: Path) -> list[SampleAnswers]:
    """The run's sample-answer events, oldest first (a step answered again after a divergence comes twice)."""
    return sample_answers_of(read_events(run_dir))


def _drop_after(curves: RunCurves, step: int) -> None:
    """Training went on from `step` (a resume from its checkpoint, a recovery): the steps after it that the
    earlier attempt reported were abandoned, and leave the curves."""
    kept = sum(s <= step for s in curves.steps)
    del curves.steps[kept:], curves.losses[kept:]
    kept = sum(s <= step for s in curves.val_steps)
    del curves.val_steps[kept:], curves.val_losses[kept:]


def read_curves(run_dir: Path) -> RunCurves:
    return curves_of(read_events(run_dir))


# A step report as the trainer writes it (Event.to_json_line: the kind, then the fields in their order): its step
# and loss read without parsing the rest. A line in any other shape is parsed in full.
_STEP_LINE = re.compile(r'\{"event": "step", "step": (\d+), "epoch": [^,]*, "loss": ([^,]*),')
STEP_REPORT_PREFIX = '{"event": "step", '


def file_stamp(path: Path) -> list[int] | None:
    """A file's [size, modification time in ns], None when absent: what tells that it changed."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


def _step_and_loss(line: str) -> tuple[int, float | None] | None:
    match = _STEP_LINE.match(line)
    if match is None:
        return None
    loss = match.group(2)
    return int(match.group(1)), None if loss == "null" else float(loss)


def curves_of(events: Iterable[Event]) -> RunCurves:
    """The run's train and validation losses as it stands: one line, without the steps it went back over."""
    curves = RunCurves()
    for e in events:
        _add_event(curves, e)
    return curves


def _finite(x: object) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def _add_event(curves: RunCurves, e: Event) -> None:
    if isinstance(e, RunStarted):
        _drop_after(curves, e.start_step)
    elif isinstance(e, Recovered):
        _drop_after(curves, e.back_to)
    elif isinstance(e, StepReport) and _finite(e.loss):  # a loss that was not finite is stored as null
        curves.steps.append(e.step)
        curves.losses.append(e.loss)
    elif isinstance(e, ValidationResult) and e.split == "valid" and _finite(e.val_loss):
        curves.val_steps.append(e.step)
        curves.val_losses.append(e.val_loss)


def _curves_and_samples(run: RunFolder) -> tuple[RunCurves, list[SampleAnswers]]:
    """One pass over metrics.jsonl: a step report's step and loss taken from its line as written, any other line
    parsed (a run of 20,000 reports is read in a fraction of the time of parsing each)."""
    curves, samples = RunCurves(), list[SampleAnswers]()
    for line in metrics_lines(run):  # in order: a resume drops the steps reported after its checkpoint
        quick = _step_and_loss(line) if line.startswith(STEP_REPORT_PREFIX) else None
        if quick is not None:
            if quick[1] is not None:
                curves.steps.append(quick[0])
                curves.losses.append(quick[1])
            continue
        event = parse_event_line(line)
        if event is None:
            continue
        _add_event(curves, event)
        samples += sample_answers_of([event])
    return curves, samples


def metrics_lines(run: RunFolder) -> list[str]:
    try:
        with run.metrics.open(encoding="utf-8") as f:
            return f.readlines()
    except (OSError, UnicodeDecodeError):
        return []


class RunReadings:
    """The curves and sample answers of the runs looked at last, read once while their metrics.jsonl is
    unchanged: selecting runs again, or one more, reads only what changed."""

    def __init__(self, keep: int = 32):
        self.keep = keep
        self._kept: dict[str, tuple[list[int] | None, RunCurves, list[SampleAnswers]]] = {}

    def _read(self, run_dir: Path) -> tuple[RunCurves, list[SampleAnswers]]:
        run = RunFolder(run_dir)
        stamp = file_stamp(run.metrics)
        key = str(run.path)
        kept = self._kept.pop(key, None)
        if kept is None or kept[0] != stamp or stamp is None:
            kept = (stamp, *_curves_and_samples(run))
        self._kept[key] = kept  # the newest last; the oldest go beyond `keep`
        while len(self._kept) > self.keep:
            del self._kept[next(iter(self._kept))]
        return kept[1], kept[2]

    def curves(self, run_dir: Path) -> RunCurves:
        return self._read(run_dir)[0]

    def sample_answers(self, run_dir: Path) -> list[SampleAnswers]:
        return self._read(run_dir)[1]
