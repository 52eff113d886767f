"""Earlier runs: their settings, final losses and curves, read back from run folders.

Listing a thousand runs must not parse a thousand config.yaml and metrics.jsonl files: each run folder keeps a
small summary (RUN/summary.json) of what the Runs tab shows, with the size and modification time of every file
it was made from. It is used while those files are unchanged and made again from them when any changed (a run
that trains, a note, an evaluation, a rename that rewrote config.yaml). Written atomically; a folder that cannot
be written to is summarized from its files each time.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .checkpoints import atomic_write_text
from .run_folder import RunFolder

# Bump when RunSummary's cached fields change: older summaries are then made again.
SUMMARY_VERSION = 1


@dataclass
class RunCurves:
    steps: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    val_steps: list[int] = field(default_factory=list)
    val_losses: list[float] = field(default_factory=list)


@dataclass
class RunSummary:
    path: Path
    name: str
    config: dict[str, Any]
    last_step: int
    final_loss: float | None  # the last train-loss report (noisy)
    best_val_loss: float | None
    status: str  # "finished", "stopped", "failed", "incomplete"
    modified: float
    final_val_loss: float | None = None  # the last validation: the run's headline figure
    notes: str = ""  # notes.md
    last_evaluation: dict[str, Any] | None = None  # the newest Evaluate result's losses (row losses left out)
    has_row_losses: bool = False  # some evaluation kept per-row losses (the Hardest rows dialog)

    @property
    def model_name(self) -> str:
        return Path(str(self.config.get("model", ""))).name


def read_events(run_dir: Path) -> list[dict[str, Any]]:
    path = RunFolder(run_dir).metrics
    events = []
    try:
        with path.open(encoding="utf-8") as f:
            for line in f:
                try:
                    events.append(json.loads(line))
                except ValueError:
                    continue  # a line cut short by a crash
    except OSError:
        pass
    return events


def read_sample_answers(run_dir: Path) -> list[dict[str, Any]]:
    """The run's sample-answer events, oldest first (a step answered again after a divergence comes twice)."""
    return [e for e in read_events(run_dir) if e.get("event") == "samples" and isinstance(e.get("answers"), list)]


def read_curves(run_dir: Path) -> RunCurves:
    return curves_of(read_events(run_dir))


# A step report as the trainer writes it (Event.to_json_line: the kind, then the fields in their order): its step
# and loss read without parsing the rest. A line in any other shape is parsed in full.
_STEP_LINE = re.compile(r'\{"event": "step", "step": (\d+), "epoch": [^,]*, "loss": ([^,]*),')
_STEP_PREFIX = '{"event": "step", '


def _step_and_loss(line: str) -> tuple[int, float | None] | None:
    match = _STEP_LINE.match(line)
    if match is None:
        return None
    loss = match.group(2)
    return int(match.group(1)), None if loss == "null" else float(loss)


def curves_of(events: list[dict[str, Any]]) -> RunCurves:
    curves = RunCurves()
    for e in events:
        if e.get("event") == "step" and e.get("loss") is not None:
            curves.steps.append(e["step"])
            curves.losses.append(e["loss"])
        elif e.get("event") == "validation" and e.get("split") == "valid" and e.get("val_loss") is not None:
            curves.val_steps.append(e["step"])
            curves.val_losses.append(e["val_loss"])
    return curves


def _curves_and_samples(run: RunFolder) -> tuple[RunCurves, list[dict[str, Any]]]:
    """One pass over metrics.jsonl: a step report's step and loss taken from its line as written, any other line
    parsed (a run of 20,000 reports is read in a fraction of the time of parsing each)."""
    curves, others = RunCurves(), []
    for line in _lines(run):
        quick = _step_and_loss(line) if line.startswith(_STEP_PREFIX) else None
        if quick is not None:
            if quick[1] is not None:
                curves.steps.append(quick[0])
                curves.losses.append(quick[1])
        else:
            event = _parsed(line)
            if event is not None:
                others.append(event)
    rest = curves_of(others)  # validations, and any step report in another shape
    if rest.steps:  # rare: merged in step order
        pairs = sorted(zip(curves.steps + rest.steps, curves.losses + rest.losses, strict=True), key=lambda p: p[0])
        curves.steps, curves.losses = [p[0] for p in pairs], [p[1] for p in pairs]
    curves.val_steps, curves.val_losses = rest.val_steps, rest.val_losses
    samples = [e for e in others if e.get("event") == "samples" and isinstance(e.get("answers"), list)]
    return curves, samples


def _lines(run: RunFolder) -> list[str]:
    try:
        with run.metrics.open(encoding="utf-8") as f:
            return f.readlines()
    except (OSError, UnicodeDecodeError):
        return []


def _parsed(line: str) -> dict[str, Any] | None:
    try:
        event = json.loads(line)
    except ValueError:
        return None  # a line cut short by a crash
    return event if isinstance(event, dict) else None


class RunReadings:
    """The curves and sample answers of the runs looked at last, read once while their metrics.jsonl is
    unchanged: selecting runs again, or one more, reads only what changed."""

    def __init__(self, keep: int = 32):
        self.keep = keep
        self._kept: dict[str, tuple[list[int] | None, RunCurves, list[dict[str, Any]]]] = {}

    def _read(self, run_dir: Path) -> tuple[RunCurves, list[dict[str, Any]]]:
        run = RunFolder(run_dir)
        stamp = _sources(run)[run.METRICS]
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

    def sample_answers(self, run_dir: Path) -> list[dict[str, Any]]:
        return self._read(run_dir)[1]


def _sources(run: RunFolder) -> dict[str, list[int] | None]:
    """What a summary is made from, each file as [size, mtime in ns] (None: absent): its fingerprint."""
    out: dict[str, list[int] | None] = {}
    for path in (run.config, run.metrics, run.evaluation, run.notes):
        try:
            st = os.stat(path)
            out[path.name] = [st.st_size, st.st_mtime_ns]
        except OSError:
            out[path.name] = None
    return out


def _headline(result: dict[str, Any]) -> dict[str, Any]:
    """An evaluation result without its per-row losses (those can be megabytes)."""
    return {k: v for k, v in result.items() if k != "row_losses"}


def _read_evaluations(run: RunFolder) -> list[dict[str, Any]]:
    try:
        results = json.loads(run.evaluation.read_text(encoding="utf-8")).get("results", [])
        return [r for r in results if isinstance(r, dict)]
    except (OSError, ValueError, AttributeError):
        return []


def _summarize_files(run: RunFolder) -> dict[str, Any] | None:
    """The cached fields, from the run's files; None when config.yaml is missing or unreadable (not a run)."""
    try:
        config = yaml.load(run.config.read_text(encoding="utf-8"), Loader=_Loader) or {}
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return None
    if not isinstance(config, dict):
        return None
    status, last_step, final_loss, best, final_val = "incomplete", 0, None, None, None
    # Of the step reports only the last one counts: it alone is parsed, and read in its place among the others.
    reports: list[tuple[int, str]] = []  # (place among the other events, line)
    events: list[dict[str, Any]] = []
    for line in _lines(run):
        if line.startswith(_STEP_PREFIX):
            reports.append((len(events), line))
        elif (event := _parsed(line)) is not None:
            events.append(event)
    for place, line in reversed(reports):  # the last one that parses (a crash may have cut the very last)
        if (event := _parsed(line)) is not None:
            events.insert(place, event)
            break
    for e in events:
        kind = e.get("event")
        if kind == "step":
            last_step, final_loss = e.get("step", last_step), e.get("loss")
        elif kind == "validation" and e.get("split") == "valid":
            v = e.get("val_loss")
            best = v if best is None or (v is not None and v < best) else best
            final_val = v if v is not None else final_val
        elif kind == "finished":
            status = "stopped" if e.get("stopped") else "finished"
            last_step = e.get("step", last_step)
        elif kind == "failed":
            status = "failed"
    try:
        notes = run.notes.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        notes = ""
    evaluations = _read_evaluations(run)
    return {
        "config": config,
        "last_step": last_step,
        "final_loss": final_loss,
        "best_val_loss": best,
        "status": status,
        "final_val_loss": final_val,
        "notes": notes,
        "last_evaluation": _headline(evaluations[-1]) if evaluations else None,
        "has_row_losses": any(r.get("row_losses") for r in evaluations),
    }


def _cached(run: RunFolder, sources: dict[str, list[int] | None]) -> dict[str, Any] | None:
    """The summary kept in the folder when it was made from exactly these files; None when stale or absent."""
    try:
        kept = json.loads(run.summary.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    if not isinstance(kept, dict) or kept.get("version") != SUMMARY_VERSION or kept.get("sources") != sources:
        return None
    fields = kept.get("summary")
    return fields if isinstance(fields, dict) else None


def summarize_run(run_dir: Path, use_cache: bool = True) -> RunSummary | None:
    """A run's summary: the one cached in its folder while fresh, else made from its files (and cached)."""
    run = RunFolder(run_dir)
    sources = _sources(run)
    if sources[run.CONFIG] is None:
        return None
    fields = _cached(run, sources) if use_cache else None
    if fields is None:
        fields = _summarize_files(run)
        if fields is None:
            return None
        if use_cache and _sources(run) == sources:  # unchanged while it was read: the cache describes it
            try:  # a cache only: no fsync; the rename still means a reader never sees half a file
                text = json.dumps({"version": SUMMARY_VERSION, "sources": sources, "summary": fields})
                atomic_write_text(run.summary, text, durable=False)
            except (OSError, TypeError, ValueError):
                pass  # a read-only folder, or settings JSON cannot hold: summarized from its files next time
    metrics = sources[run.METRICS]
    modified = metrics[1] / 1e9 if metrics else 0.0
    return RunSummary(
        run.path,
        run.name,
        fields["config"],
        fields["last_step"],
        fields["final_loss"],
        fields["best_val_loss"],
        fields["status"],
        modified,
        fields["final_val_loss"],
        fields.get("notes", ""),
        fields.get("last_evaluation"),
        bool(fields.get("has_row_losses")),
    )


def list_runs(root: Path, use_cache: bool = True) -> list[RunSummary]:
    """Every run under root, newest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    runs = [summarize_run(Path(p.path), use_cache) for p in os.scandir(root) if p.is_dir()]
    return sorted((r for r in runs if r), key=lambda r: r.modified, reverse=True)


# libyaml's loader when PyYAML has it: the same documents, ten times faster to read.
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
