"""Where a run goes and where it starts: new run, resume, branch from a checkpoint, and what the run will be.

The one place that names run folders and decides resume versus branch, for `qlora-gui train`, the window
and the trainer alike.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import TrainConfig, load_config_file
from ..data.batching import planned_steps
from ..errors import ConfigError, UserError
from . import checkpoints as ckpt
from .run_folder import STATE_FILE, RunFolder, checkpoint_step, run_of
from .run_lock import folder_owner, in_use_message


def unused_path(path: Path) -> Path:
    """`path`, or `path-2`, `path-3`, ...: the first name nothing uses yet."""
    candidate, n = Path(path), 2
    while candidate.exists():
        candidate, n = candidate.with_name(f"{Path(path).name}-{n}"), n + 1
    return candidate


def new_run_folder(root: Path, model: str) -> Path:
    """A fresh run folder under root, named by the time and the model: runs never share or overwrite one."""
    return unused_path(Path(root) / f"{time.strftime('%Y%m%d-%H%M%S')}-{Path(model).name or 'model'}")


def resume_command(run_dir: Path) -> str:
    """The command line that continues a run from its latest checkpoint with its own settings."""
    import shlex

    return f"qlora-gui train --adapter-path {shlex.quote(str(run_dir))} --resume"


def resumed_config(run_dir: Path, given: dict[str, Any]) -> tuple[TrainConfig, list[str]]:
    """A run's own settings to continue it with; a flag that would change them is refused."""
    saved = RunFolder(run_dir).config
    if not saved.is_file():
        raise ConfigError(f"{saved}: not found; --adapter-path must be a run folder made by `qlora-gui train`")
    cfg, notes = load_config_file(saved)
    for key, value in given.items():
        if cfg.value(key) != value:
            raise ConfigError(
                f"--resume continues the run with its own settings, but {key}={value!r} differs "
                f"from the run's {cfg.value(key)!r}; drop that flag or start a new run"
            )
    cfg.adapter_path, cfg.resume = str(run_dir), True
    return cfg, notes


@dataclass
class ResumePlan:
    config: TrainConfig
    resume_from: Path | None  # a checkpoint copied into a new run folder; None: continue the run in place


def plan_resume(checkpoint: str | Path, runs_root: Path) -> ResumePlan:
    """Continue from a checkpoint: the latest continues its run; an older one branches into a new folder, so
    the run's later checkpoints are never overwritten."""
    checkpoint = Path(checkpoint)
    run = run_of(checkpoint)
    cfg, _ = load_config_file(run.config)
    latest = ckpt.latest_checkpoint(run.path)
    if latest is not None and latest.path.resolve() == checkpoint.resolve():
        cfg.adapter_path, cfg.resume = str(run.path), True
        return ResumePlan(cfg, None)
    cfg.adapter_path = str(unused_path(Path(runs_root) / f"{run.name}-from-{checkpoint_step(checkpoint)}"))
    cfg.resume = False
    return ResumePlan(cfg, checkpoint)


def resume_source(cfg: TrainConfig, resume_from: Path | None) -> Path | None:
    """The checkpoint a run starts from (None: from scratch), checked against the folder it writes to.
    A branch copies its checkpoint into the fresh run folder first."""
    run = RunFolder(cfg.adapter_path)
    owner = folder_owner(run.path)
    if owner is not None:  # said before any work; the lock itself is taken when the folder is written
        raise UserError(in_use_message(run.path, owner))
    if resume_from is None and not cfg.resume:
        if run.holds_a_run():
            hint = (
                f"continue it with: {resume_command(run.path)}"
                if ckpt.latest_checkpoint(run.path)
                else "it has no checkpoint to continue from"
            )
            raise UserError(f"{run.path} already holds a run; choose a new folder, or {hint}")
        return None
    if resume_from is None:
        latest = ckpt.latest_checkpoint(run.path)
        if latest is None:
            raise UserError(f"nothing to resume in {run.path}: it has no checkpoints; start a new run instead")
        return latest.path
    step = checkpoint_step(resume_from)
    if step is None or not (resume_from / STATE_FILE).is_file():
        raise UserError(f"{resume_from} is not a checkpoint folder (no {STATE_FILE})")
    if run_of(resume_from).same_as(run):
        latest = ckpt.latest_checkpoint(run.path)
        if latest and latest.step > step:
            raise UserError(
                f"{run.path} has checkpoints after step {step}; resuming from it would overwrite them. "
                "Resume into a new run folder instead"
            )
        return resume_from
    if run.holds_a_run():
        raise UserError(f"{run.path} already holds a run; choose an empty folder to branch into")
    target = run.checkpoint(step)
    shutil.copytree(resume_from, target)
    return target


def planned_total(rows: int | None, cfg: TrainConfig) -> int | None:
    """The steps a run will train, as the trainer counts them on one machine; None when unknown yet."""
    if rows is None:
        return cfg.iters
    return planned_steps(rows, cfg.batch_size, cfg.grad_accumulation_steps, cfg.epochs, cfg.iters)[1]


def step_plan(rows: int, cfg: TrainConfig) -> str:
    """What Start will run, so that a step budget spanning more than the epochs asked for is visible."""
    per_epoch, total = planned_steps(rows, cfg.batch_size, cfg.grad_accumulation_steps, cfg.epochs, cfg.iters)
    return (
        f"{rows:,} training rows · {per_epoch:,} steps per epoch · {total:,} steps = "
        f"{total / max(per_epoch, 1):.2f} epochs" + (" (the step budget decides)" if cfg.iters else "")
    )
