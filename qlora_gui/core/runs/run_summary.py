"""What the Runs tab shows of each run, kept in the run folder's summary.json.

Listing a thousand runs must not parse a thousand config.yaml and metrics.jsonl files: each run folder keeps a
small summary (RUN/summary.json) of what the Runs tab shows, with the size and modification time of every file
it was made from. It is used while those files are unchanged and made again from them when any changed (a run
that trains, a note, an evaluation, a rename that rewrote config.yaml). Written atomically; a folder that cannot
be written to is summarized from its files each time.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..events import Event, Failed, Finished, StepReport, ValidationResult, finite_or_none, parse_event_line
from .checkpoints import atomic_write_text
from .history import STEP_REPORT_PREFIX, file_stamp, metrics_lines
from .run_folder import RunFolder

# Bump when RunSummary's cached fields change: older summaries are then made again.
SUMMARY_VERSION = 1
ADDED = "added"  # the status of a run folder without metrics.jsonl: trained elsewhere and added (run_import.py)


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


def _sources(run: RunFolder) -> dict[str, list[int] | None]:
    """What a summary is made from, each file as [size, mtime in ns] (None: absent): its fingerprint."""
    return {path.name: file_stamp(path) for path in (run.config, run.metrics, run.evaluation, run.notes)}


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
    if not run.metrics.exists():  # trained elsewhere and added (run_import.py): mlx-lm's config says how far
        iters = config.get("iters")
        status, last_step = ADDED, iters if isinstance(iters, int) else 0
    # Of the step reports only the last one counts: it alone is parsed, and read in its place among the others.
    reports: list[tuple[int, str]] = []  # (place among the other events, line)
    events: list[Event] = []
    for line in metrics_lines(run):
        if line.startswith(STEP_REPORT_PREFIX):
            reports.append((len(events), line))
        elif (event := parse_event_line(line)) is not None:
            events.append(event)
    for place, line in reversed(reports):  # the last one that parses (a crash may have cut the very last)
        if (event := parse_event_line(line)) is not None:
            events.insert(place, event)
            break
    for e in events:
        if isinstance(e, StepReport):
            last_step, final_loss = e.step, finite_or_none(e.loss)
        elif isinstance(e, ValidationResult) and e.split == "valid":
            v = finite_or_none(e.val_loss)
            best = v if best is None or (v is not None and v < best) else best
            final_val = v if v is not None else final_val
        elif isinstance(e, Finished):
            status = "stopped" if e.stopped else "finished"
            last_step = e.step
        elif isinstance(e, Failed):
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
