"""Checkpoints and atomic writes: a crash never leaves half a file. The layout is run_folder.py's."""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import mlx.core as mx
from mlx.utils import tree_flatten, tree_map_with_path

from ..errors import UserError
from ..model.grouped_lora import grouped_layout, load_adapter_weights
from .run_folder import ADAPTER_CONFIG, ADAPTER_FILE, OPTIMIZER_FILE, STATE_FILE, RunFolder, checkpoint_step


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_text(path: Path, text: str, durable: bool = True) -> None:
    """Staged then renamed: a reader sees the old file or the new one, never half of one. `durable` also syncs
    it to the disk first (a cache that is rebuilt when lost skips that)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_save_safetensors(path: Path, arrays: dict[str, mx.array], metadata: dict[str, str] | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.stem}.{os.getpid()}.tmp.safetensors"
    try:
        mx.save_safetensors(str(tmp), arrays, metadata=metadata or {})
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


_SAVE_HINTS = {
    errno.ENOSPC: "the disk is full: free some space",
    errno.EDQUOT: "the disk quota is used up",
    errno.EROFS: "the disk is read-only",
    errno.EACCES: "there is no permission to write there",
}


def save_failed_message(run_dir: Path, step: int, error: BaseException) -> str:
    """What a failed save says: which step, where, why, what to do, and what is still intact."""
    code = getattr(error, "errno", None) or 0  # an OSError's; 0: none
    why = os.strerror(code) if code else str(error)
    hint = _SAVE_HINTS.get(code, "check that the folder is writable and has space")
    previous = latest_checkpoint(run_dir)
    kept = (
        f"the checkpoint of step {previous.step} is intact; resume from it when fixed"
        if previous
        else "no earlier checkpoint exists"
    )
    return f"could not save the checkpoint of step {step} in {run_dir}: {why}. {hint[0].upper()}{hint[1:]}; {kept}"


@dataclass
class CheckpointInfo:
    step: int
    path: Path
    val_loss: float | None
    state: dict[str, Any]


def save_checkpoint(
    run_dir: Path,
    step: int,
    adapters: dict[str, mx.array],
    adapter_config: dict[str, Any],
    optimizer_state: dict[str, mx.array],
    state: dict[str, Any],
) -> Path:
    """Write a whole checkpoint under a temporary name, then rename it into place."""
    run = RunFolder(run_dir)
    final = run.checkpoint(step)
    staging = final.parent / f".tmp-{final.name}-{os.getpid()}"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    try:
        mx.save_safetensors(str(staging / ADAPTER_FILE), adapters)
        mx.save_safetensors(str(staging / OPTIMIZER_FILE), optimizer_state)
        (staging / ADAPTER_CONFIG).write_text(json.dumps(adapter_config, indent=2))
        (staging / STATE_FILE).write_text(json.dumps(state, indent=2))
        for f in staging.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
    except BaseException:  # a full or read-only disk: no half-written checkpoint stays behind
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if final.exists():  # the same step saved twice (e.g. stop right after a periodic save)
        old = final.parent / f".old-{final.name}-{os.getpid()}"
        os.replace(final, old)
        os.replace(staging, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, final)
    _fsync_dir(final.parent)
    # The run folder's own adapter is always the latest checkpoint's.
    atomic_save_safetensors(run.adapters, adapters)
    atomic_write_text(run.adapter_config, json.dumps(adapter_config, indent=2))
    return final


def list_checkpoints(run_dir: Path) -> list[CheckpointInfo]:
    out: list[CheckpointInfo] = []
    root = RunFolder(run_dir).checkpoints
    if not root.is_dir():
        return out
    for d in sorted(root.iterdir()):
        step = checkpoint_step(d)
        if step is None or not (d / STATE_FILE).is_file():
            continue
        try:
            state = json.loads((d / STATE_FILE).read_text())
        except (OSError, ValueError):
            continue
        out.append(CheckpointInfo(step, d, state.get("val_loss"), state))
    return out


def latest_checkpoint(run_dir: Path) -> CheckpointInfo | None:
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def best_checkpoint(run_dir: Path) -> CheckpointInfo | None:
    scored = [c for c in list_checkpoints(run_dir) if c.val_loss is not None]
    return min(scored, key=lambda c: (c.val_loss, -c.step)) if scored else None


def prune_checkpoints(run_dir: Path, keep_last: int) -> list[Path]:
    """Keep the last `keep_last` checkpoints and the best by validation loss."""
    found = list_checkpoints(run_dir)
    best = best_checkpoint(run_dir)
    keep = {c.step for c in found[-keep_last:]} | ({best.step} if best else set())
    removed = []
    for c in found:
        if c.step not in keep:
            shutil.rmtree(c.path, ignore_errors=True)
            removed.append(c.path)
    return removed


@dataclass
class TrainState:
    """Where a run stands, as state.json keeps it: a resume continues from exactly here."""

    seed: int = 0
    step: int = 0  # optimizer updates done
    epoch: int = 0
    batch_pos: int = 0  # the next batch of the epoch's order
    best_val_loss: float | None = None
    best_step: int | None = None
    val_loss: float | None = None  # the validation of this very step; None once training went on
    trained_tokens: int = 0
    lr_scale: float = 1.0  # halved by each recovery from divergence
    recoveries: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def updated(self, saved: dict[str, Any]) -> TrainState:
        """This state with what a state.json holds; a key it lacks (an older version's) keeps its value here."""
        return dataclasses.replace(self, **{f.name: saved[f.name] for f in dataclasses.fields(self) if f.name in saved})


def restore_arrays(
    model: Any, optimizer: Any, adapters: dict[str, mx.array], opt_flat: dict[str, mx.array], source: str
) -> None:
    """Adapter weights into the model and a flat optimizer state into an optimizer made for the same settings."""
    load_adapter_weights(model, adapters)
    opt_flat = grouped_layout(model, opt_flat)  # saved in mlx-lm's per-projection names, as the adapters
    missing = [p for p, _ in cast(list[tuple[str, Any]], tree_flatten(optimizer.state)) if p not in opt_flat]
    if missing:
        raise UserError(
            f"{source}: the optimizer state does not match these settings (missing {missing[0]}); "
            "resume with the run's own config"
        )
    optimizer.state = tree_map_with_path(lambda p, _: opt_flat[p], optimizer.state)
    mx.eval(model.parameters(), optimizer.state)


def load_checkpoint(path: Path) -> tuple[dict[str, mx.array], dict[str, mx.array], dict[str, Any]]:
    adapters = _load_arrays(path / ADAPTER_FILE)
    optimizer_state = _load_arrays(path / OPTIMIZER_FILE)
    state = json.loads((path / STATE_FILE).read_text())
    return adapters, optimizer_state, state


def _load_arrays(path: Path) -> dict[str, mx.array]:
    # mx.load's stub allows an array or a tuple too; a .safetensors file always loads as a dict
    return cast(dict[str, mx.array], mx.load(str(path)))
