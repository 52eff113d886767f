"""Earlier runs: their settings, final losses and curves, read back from run folders."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .run_folder import RunFolder


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


def _drop_after(curves: RunCurves, step: int) -> None:
    """Training went on from `step` (a resume from its checkpoint, a recovery): the steps after it that the
    earlier attempt reported were abandoned, and leave the curves."""
    kept = sum(s <= step for s in curves.steps)
    del curves.steps[kept:], curves.losses[kept:]
    kept = sum(s <= step for s in curves.val_steps)
    del curves.val_steps[kept:], curves.val_losses[kept:]


def read_curves(run_dir: Path) -> RunCurves:
    """The run's train and validation losses as it stands: one line, without the steps it went back over."""
    curves = RunCurves()
    for e in read_events(run_dir):
        if e.get("event") == "run_started" and isinstance(e.get("start_step"), int):
            _drop_after(curves, e["start_step"])
        elif e.get("event") == "recovery" and isinstance(e.get("back_to"), int):
            _drop_after(curves, e["back_to"])
        elif e.get("event") == "step" and e.get("loss") is not None:
            curves.steps.append(e["step"])
            curves.losses.append(e["loss"])
        elif e.get("event") == "validation" and e.get("split") == "valid" and e.get("val_loss") is not None:
            curves.val_steps.append(e["step"])
            curves.val_losses.append(e["val_loss"])
    return curves


def summarize_run(run_dir: Path) -> RunSummary | None:
    run_dir = Path(run_dir)
    try:
        config = yaml.safe_load(RunFolder(run_dir).config.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return None
    events = read_events(run_dir)
    status, last_step, final_loss, best, final_val = "incomplete", 0, None, None, None
    for e in events:
        kind = e.get("event")
        if kind == "step":
            last_step, final_loss = e["step"], e.get("loss")
        elif kind == "validation" and e.get("split") == "valid":
            v = e.get("val_loss")
            best = v if best is None or (v is not None and v < best) else best
            final_val = v if v is not None else final_val
        elif kind == "finished":
            status = "stopped" if e.get("stopped") else "finished"
            last_step = e.get("step", last_step)
        elif kind == "failed":
            status = "failed"
    metrics = RunFolder(run_dir).metrics
    modified = metrics.stat().st_mtime if metrics.exists() else 0.0
    return RunSummary(run_dir, run_dir.name, config, last_step, final_loss, best, status, modified, final_val)


def list_runs(root: Path) -> list[RunSummary]:
    root = Path(root)
    if not root.is_dir():
        return []
    runs = [summarize_run(p) for p in root.iterdir() if p.is_dir()]
    return sorted((r for r in runs if r), key=lambda r: r.modified, reverse=True)
