"""A run folder from elsewhere, added to the runs folder so that the Runs tab, Playground, Evaluate and Export
open it: one trained by `mlx_lm.lora` or mlx-lm-lora (adapters.safetensors and adapter_config.json, no metrics),
or one of ours kept in another place.

Nothing changes where it was: its files are linked (a hard link on the same disk) or copied into a new run folder
under the runs folder, built under a temporary name and renamed into place. mlx-lm's adapter_config.json holds
its whole config (`vars(args)`): it becomes the run's config.yaml, with the model and data paths made absolute
(mlx-lm keeps them as given, relative to where it ran: they are looked for beside the folder, in it, and from
here). Each NNNNNNN_adapters.safetensors it saved, and its final adapter at step `iters`, become checkpoints
(a state.json with the step; no optimizer state, so such a run is never offered for resuming). With no
metrics.jsonl the Runs tab lists it as "added"; its notes say where it came from.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from ..errors import UserError
from .checkpoints import atomic_write_text
from .run_folder import ADAPTER_CONFIG, ADAPTER_FILE, STATE_FILE, RunFolder
from .run_lock import folder_owner, in_use_message
from .run_plan import unused_path

MLX_CHECKPOINT = re.compile(r"^(\d+)_adapters\.safetensors$")  # mlx-lm's f"{step:07d}_adapters.safetensors"


class BaseModelNeeded(UserError):
    """The folder's adapter_config.json names no base model (mlx-lm-lora writes none): ask which it is."""


def add_run_folder(source: str | Path, runs_root: str | Path, model: str | None = None) -> Path:
    """Add `source` to the runs folder as a new run folder (named after it); returns its path. `model`: the base
    model, when its config names none (else the config's is used). UserError, saying what is missing, when it is
    not an adapter folder; BaseModelNeeded when the base must be given."""
    source = Path(source).expanduser().resolve()
    root = Path(runs_root).expanduser().resolve()
    if not source.is_dir():
        raise UserError(f"{source}: no such folder; pick the folder that holds adapters.safetensors")
    if source.parent == root:
        raise UserError(f"{source.name} is in the runs folder already ({root})")
    run = RunFolder(source)
    if run.config.is_file():  # one of ours, trained in another place
        owner = folder_owner(source)
        if owner is not None:
            raise UserError(in_use_message(source, owner))
        return _staged(root, source.name, lambda staging, target: _copy_run(source, staging, target))
    missing = [name for name in (ADAPTER_FILE, ADAPTER_CONFIG) if not (source / name).is_file()]
    if missing:
        raise UserError(
            f"{source}: no {' or '.join(missing)} here; add a run folder, or a folder written by mlx_lm.lora or "
            "mlx-lm-lora (adapters.safetensors and adapter_config.json)"
        )
    try:
        config = json.loads((source / ADAPTER_CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise UserError(f"{source / ADAPTER_CONFIG}: cannot read it ({e})") from e
    if not isinstance(config, dict):
        raise UserError(f"{source / ADAPTER_CONFIG}: not an adapter config (a JSON object of settings)")
    if model:
        config = {**config, "model": str(Path(model).expanduser().resolve()) if Path(model).exists() else model}
    elif not config.get("model"):
        raise BaseModelNeeded(
            f"{source / ADAPTER_CONFIG} does not name its base model (mlx-lm-lora does not write it): pick the base "
            "model it was trained on (not a model fused with it)"
        )
    lora = config.get("lora_parameters")
    if "fine_tune_type" not in config and isinstance(lora, dict) and lora.get("use_dora"):
        config["fine_tune_type"] = "dora"  # mlx-lm-lora says DoRA inside lora_parameters; mlx-lm reads this
    return _staged(root, source.name, lambda staging, target: _adopt_adapters(source, config, staging, target))


def _staged(root: Path, name: str, build: Callable[[Path, Path], None]) -> Path:
    """build(staging, target) fills a temporary folder that then becomes the run folder `target`."""
    target = unused_path(root / name)
    staging = root / f".adding-{target.name}-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        build(staging, target)
        (staging / RunFolder.SUMMARY).unlink(missing_ok=True)  # made again for its new place
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def _link(source: Path, target: Path) -> None:
    """Weights as a hard link (no copy of the bytes) where the disk allows one: this app replaces a
    .safetensors file whole, never writes into it, so the two folders never change each other. Anything else
    (metrics.jsonl is appended to) is copied."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        if source.suffix != ".safetensors":
            raise OSError("copied")
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _copy_run(source: Path, staging: Path, target: Path) -> None:
    for path in sorted(source.rglob("*")):
        if path.is_file() and path.name != RunFolder.LOCK:
            _link(path, staging / path.relative_to(source))
    config_file = RunFolder(staging).config
    config = yaml.safe_load(config_file.read_text(encoding="utf-8")) or {}
    if isinstance(config, dict):  # a resume writes to the folder its config names: this one
        config["adapter_path"] = str(target)
        atomic_write_text(config_file, yaml.safe_dump(config, sort_keys=False, width=10_000))


def _absolute(value: Any, source: Path) -> Any:
    """A path mlx-lm kept as given, made absolute where it names something that exists; else as it was (a
    Hugging Face id, or a folder that is gone: the tab that needs it says so)."""
    if not isinstance(value, str) or not value or Path(value).expanduser().is_absolute():
        return value
    for base in (source.parent, source, Path.cwd()):
        if (base / value).exists():
            return str((base / value).resolve())
    return value


def _adopt_adapters(source: Path, config: dict[str, Any], staging: Path, target: Path) -> None:
    config = {**config, "model": _absolute(config["model"], source), "data": _absolute(config.get("data"), source)}
    config["adapter_path"] = str(target)
    adapter_config = json.dumps(config, indent=2)
    (staging / ADAPTER_CONFIG).write_text(adapter_config, encoding="utf-8")
    _link(source / ADAPTER_FILE, staging / ADAPTER_FILE)
    saved = {int(m.group(1)): f for f in source.iterdir() if (m := MLX_CHECKPOINT.match(f.name))}
    final = config.get("iters")
    if isinstance(final, int) and final >= 0 and final not in saved:
        saved[final] = source / ADAPTER_FILE
    if not saved:
        saved[0] = source / ADAPTER_FILE
    run = RunFolder(staging)
    for step, file in sorted(saved.items()):
        folder = run.checkpoint(step)
        _link(file, folder / ADAPTER_FILE)
        (folder / ADAPTER_CONFIG).write_text(adapter_config, encoding="utf-8")
        (folder / STATE_FILE).write_text(json.dumps({"step": step, "trained_elsewhere": True}), encoding="utf-8")
    atomic_write_text(run.config, yaml.safe_dump(config, sort_keys=False))
    atomic_write_text(run.notes, f"Added from {source} (trained elsewhere: no metrics).\n")
