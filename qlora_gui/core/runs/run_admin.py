"""Looking after run folders: a name, notes, and how their settings differ. Deleting is the UI's (to the trash)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml

from ..errors import UserError
from .checkpoints import CheckpointInfo, atomic_write_text, latest_checkpoint
from .run_folder import RunFolder
from .run_lock import folder_owner, in_use_message
from .run_summary import RunSummary, list_runs

_NAME = re.compile(r"^[^/\\:\0]+$")
# Keys that differ between any two runs without saying anything about how they trained.
_NOT_SETTINGS = {"adapter_path", "resume"}


def read_notes(run_dir: Path) -> str:
    try:
        return RunFolder(run_dir).notes.read_text(encoding="utf-8")
    except OSError:
        return ""


def write_notes(run_dir: Path, text: str) -> None:
    """Atomically; an empty text removes the file."""
    path = RunFolder(run_dir).notes
    if text.strip():
        atomic_write_text(path, text)
    elif path.exists():
        path.unlink()


def rename_run(run_dir: Path, new_name: str) -> Path:
    """Rename a run folder in place and keep its config.yaml's adapter_path pointing at it (resume reads it)."""
    run_dir = Path(run_dir)
    name = new_name.strip()
    if not name or not _NAME.match(name) or name in (".", "..") or name.startswith("."):
        raise UserError(
            f"'{new_name}' cannot name a run folder: use letters, digits, spaces, '-' or '_', "
            "no slashes or colons, not starting with '.'"
        )
    target = run_dir.with_name(name)
    if target == run_dir:
        return run_dir
    owner = folder_owner(run_dir)
    if owner is not None:  # a trainer (this app's or another process's) writes there
        raise UserError(in_use_message(run_dir, owner))
    if target.exists() and not target.samefile(run_dir):  # a case-only rename on a case-insensitive disk is fine
        raise UserError(f"a run named '{name}' already exists in {run_dir.parent}: pick another name")
    os.rename(run_dir, target)
    config_path = RunFolder(target).config
    if not config_path.is_file():
        return target
    try:
        config = yaml.safe_load(config_path.read_text()) or {}
        if isinstance(config, dict) and config.get("adapter_path"):
            config["adapter_path"] = str(target)
            atomic_write_text(config_path, yaml.safe_dump(config, sort_keys=False, width=10_000))
    except (OSError, yaml.YAMLError) as e:
        raise UserError(
            f"the run is now '{name}', but its config.yaml could not be updated ({e}); resuming it "
            "would write to the old folder name until you fix adapter_path there"
        ) from e
    return target


def step_budget(config: dict[str, Any]) -> str:
    """What the run was set to train for: '300 steps' or '2 epochs'."""
    iters = config.get("iters")
    return f"{iters} steps" if iters else f"{config.get('epochs', 1)} epoch(s)"


def describe_settings(config: dict[str, Any]) -> str:
    """One line for the runs table."""
    lora = config.get("lora_parameters") or {}
    method = config.get("fine_tune_type", "lora")
    return (
        (f"{method} · " if method == "full" else f"{method} r{lora.get('rank')} · ")
        + f"lr {config.get('learning_rate')} · "
        f"bs {config.get('batch_size')}×{config.get('grad_accumulation_steps', 1)} · {step_budget(config)}"
        + (f" · {config['quantize_bits']}-bit" if config.get("quantize_bits") else "")
    )


def _flat(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def settings_differences(configs: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """The settings whose values are not the same in all the given runs: key -> each run's value (None: unset)."""
    flats = [_flat(c) for c in configs]
    keys = sorted({k for f in flats for k in f} - _NOT_SETTINGS)
    return {k: [f.get(k) for f in flats] for k in keys if len({repr(f.get(k)) for f in flats}) > 1}


MAX_COMPARED = 8  # beyond this many runs, each run's value would not fit on a line: only the names of the settings


def differences_text(names: list[str], diffs: dict[str, list[Any]]) -> str:
    """What the Runs tab says when several runs are selected: which settings differ, run by run."""
    head = f"{len(names)} runs selected (the actions act on one run: select one). "
    if not diffs:
        return head + "Their settings are the same."
    if len(names) > MAX_COMPARED:
        return (
            head + "Settings that differ: " + ", ".join(diffs) + f" (select {MAX_COMPARED} or fewer to see each run's)"
        )
    lines = [f"{key}: " + " | ".join("–" if v is None else str(v) for v in values) for key, values in diffs.items()]
    return head + "Settings that differ (" + " | ".join(names) + "):\n" + "\n".join(lines)


def resume_point(run: RunSummary) -> CheckpointInfo | None:
    """Where a run that ended before its last step continues: its latest checkpoint, when nobody trains there
    now. Runs that were stopped (Stop & save, quitting) and runs cut off (a crash, kill -9, power loss) alike."""
    if run.status not in ("incomplete", "stopped") or folder_owner(run.path) is not None:
        return None
    return latest_checkpoint(run.path)


def interrupted_runs(root: Path) -> list[tuple[RunSummary, CheckpointInfo]]:
    """Runs cut off without a finished or failed event, with a checkpoint to continue from; newest first."""
    out = []
    for run in list_runs(root):
        point = resume_point(run) if run.status == "incomplete" else None
        if point is not None:
            out.append((run, point))
    return out
