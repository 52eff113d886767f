"""Experiment trackers (report_to): the run's numbers, sample answers and settings, logged beside metrics.jsonl.

TensorBoard writes event files in RUN/tensorboard (tensorboardX); wandb keeps an offline run in RUN/wandb
(`wandb sync` uploads it; WANDB_MODE=online logs live); SwanLab an offline run in RUN/swanlog (`swanlab sync`;
SWANLAB_MODE=online logs live); Trackio its local database in RUN/trackio (`TRACKIO_DIR=RUN/trackio trackio
show`; a TRACKIO_DIR set in the environment is used instead). Every number is logged under "KIND/FIELD" (with the
split: "validation_valid/val_loss") at its step, with the value metrics.jsonl holds for the same event. What the
libraries print when they start and finish goes to stderr: stdout stays the CLI's (its --json event lines).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import sys
from pathlib import Path
from typing import Any

import yaml

from ..config import TrainConfig
from ..errors import UserError
from ..events import Event, PreferenceReport, RewardReport, RunStarted, SampleAnswers, StepReport, ValidationResult
from ..mlx_keys import tracker_names
from ..runs.run_folder import RunFolder

LOGGED = (StepReport, ValidationResult, PreferenceReport, RewardReport)  # the events whose numbers are logged


def scalars(event: Event) -> tuple[str, dict[str, float]]:
    """The event's numbers as {tag: value}, tagged by kind (and split), with its step's prefix."""
    split = getattr(event, "split", "")
    prefix = f"{event.kind}_{split}" if split else event.kind
    values = {
        f"{prefix}/{f.name}": float(v)
        for f in dataclasses.fields(event)
        if f.name != "step" and isinstance(v := getattr(event, f.name), (int, float)) and not isinstance(v, bool)
    }
    for name, v in (getattr(event, "functions", None) or {}).items():  # GRPO: each reward function's mean
        values[f"{prefix}/reward_{name}"] = float(v)
    return prefix, values


def answer_rows(event: SampleAnswers) -> list[list[str]]:
    return [[str(a.get("prompt", "")), str(a.get("reference") or ""), str(a.get("answer", ""))] for a in event.answers]


class TensorBoardTracker:
    def __init__(self, run: RunFolder, cfg: TrainConfig):
        from tensorboardX import SummaryWriter

        self.writer = SummaryWriter(logdir=str(run.tensorboard), flush_secs=10)

    def log(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            settings = yaml.safe_dump(event.config, sort_keys=False)
            self.writer.add_text("settings", "```yaml\n" + settings + "```", event.start_step)
        elif isinstance(event, SampleAnswers):
            lines = ["| prompt | reference | answer |", "|---|---|---|"]
            lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in answer_rows(event)]
            self.writer.add_text("sample_answers", "\n".join(lines), event.step)
        elif isinstance(event, LOGGED):
            for tag, value in scalars(event)[1].items():
                self.writer.add_scalar(tag, value, event.step)
            if isinstance(event, ValidationResult):
                self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class WandbTracker:
    def __init__(self, run: RunFolder, cfg: TrainConfig):
        import wandb

        self.wandb = wandb
        self.run = wandb.init(
            project=_project(run, cfg),
            name=run.name,
            id=re.sub(r"[^A-Za-z0-9_-]", "-", run.name)[:64],  # a resume continues the same wandb run
            resume="allow",
            dir=str(run.path),
            config=cfg.to_dict(),
            mode=os.environ.get("WANDB_MODE", "offline"),
        )

    def log(self, event: Event) -> None:
        if isinstance(event, SampleAnswers):
            table = self.wandb.Table(columns=["prompt", "reference", "answer"], data=answer_rows(event))
            self.run.log({"sample_answers": table}, step=event.step)
        elif isinstance(event, LOGGED):
            self.run.log(scalars(event)[1], step=event.step)

    def close(self) -> None:
        self.run.finish()


def _project(run: RunFolder, cfg: TrainConfig) -> str:
    return cfg.project_name or run.path.resolve().parent.name or "qlora-gui"


def _quiet() -> contextlib.AbstractContextManager[Any]:
    """The library's banners on stderr, never among the CLI's output on stdout."""
    return contextlib.redirect_stdout(sys.stderr)


class SwanLabTracker:
    def __init__(self, run: RunFolder, cfg: TrainConfig):
        import swanlab

        self.swanlab = swanlab
        with _quiet():
            self.run = swanlab.init(
                project=_project(run, cfg),
                name=run.name,
                log_dir=str(run.swanlab),
                config=cfg.to_dict(),
                mode=os.environ.get("SWANLAB_MODE", "offline"),
                reinit=True,  # a second run in the same process (the app) starts its own
            )

    def log(self, event: Event) -> None:
        if isinstance(event, SampleAnswers):
            table = self.swanlab.echarts.Table()
            table.add(["prompt", "reference", "answer"], answer_rows(event))
            self.run.log({"sample_answers": table}, step=event.step)
        elif isinstance(event, LOGGED):
            self.run.log(scalars(event)[1], step=event.step)

    def close(self) -> None:
        with _quiet():
            self.run.finish()


USERS_TRACKIO_DIR = os.environ.get("TRACKIO_DIR")  # before point_trackio_at sets it
TRACKIO_FOLDERS = {"TRACKIO_DIR": "", "MEDIA_DIR": "media", "ARTIFACTS_DIR": "artifacts"}


def point_trackio_at(folder: Path) -> None:
    """Trackio keeps its database in TRACKIO_DIR, read once when it is imported: set before the import, and
    moved in its modules for a later run of the same process (the app trains one run after another)."""
    os.environ["TRACKIO_DIR"] = str(folder)
    import trackio  # noqa: F401

    for name, module in list(sys.modules.items()):
        if name == "trackio" or name.startswith("trackio."):
            for attribute, below in TRACKIO_FOLDERS.items():
                if isinstance(getattr(module, attribute, None), Path):
                    setattr(module, attribute, folder / below if below else folder)


class TrackioTracker:
    def __init__(self, run: RunFolder, cfg: TrainConfig):
        point_trackio_at(Path(USERS_TRACKIO_DIR) if USERS_TRACKIO_DIR else run.trackio)
        import trackio

        self.trackio = trackio
        with _quiet():
            self.run = trackio.init(
                project=_project(run, cfg),
                name=run.name,
                config=cfg.to_dict(),
                resume="allow",  # a resume continues the same run
                embed=False,
                auto_log_gpu=False,  # memory is logged from the trainer's own measure
                auto_log_cpu=False,
                capture_console=False,
            )

    def log(self, event: Event) -> None:
        if isinstance(event, SampleAnswers):
            table = self.trackio.Table(columns=["prompt", "reference", "answer"], data=answer_rows(event))
            self.run.log({"sample_answers": table}, step=event.step)
        elif isinstance(event, LOGGED):
            self.run.log(scalars(event)[1], step=event.step)

    def close(self) -> None:
        with _quiet():
            try:
                self.trackio.finish()  # the run init made current in this thread: finished, and no longer current
            except RuntimeError:  # (none current here)
                self.run.finish()


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", "<br>")


TRACKER_CLASSES: dict[str, Any] = {
    "tensorboard": TensorBoardTracker,
    "wandb": WandbTracker,
    "swanlab": SwanLabTracker,
    "trackio": TrackioTracker,
}


def start_trackers(run: RunFolder, cfg: TrainConfig) -> list[Any]:
    """The trackers report_to names, each started for this run folder (the config has been validated)."""
    started = []
    for name in tracker_names(cfg.report_to):
        try:
            started.append(TRACKER_CLASSES[name](run, cfg))
        except Exception as e:  # each library raises its own kinds; said before any step, with its words
            for tracker in started:
                tracker.close()
            first = (str(e).strip().splitlines() or [""])[0]
            raise UserError(f"report_to {name}: the tracker did not start ({type(e).__name__}: {first})") from e
    return started
