"""Load a base model with a trained adapter on it, and look at the base through the same object.

An adapter folder is a run folder (its latest adapter) or one of its checkpoints.
The base is loaded the way it was trained: when training quantized it on load,
it is quantized again with the same bits and group size, so the adapter sits on
the weights it learned against. `base_view` swaps each adapter layer for the
frozen layer inside it, which gives the base's exact outputs without a second
copy of the weights.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten, tree_unflatten

from ..data.formats import format_named
from ..data.rows import TurnsFormat
from ..errors import ModelError, UserError
from ..model.grouped_lora import adapters_off
from ..model.loader import LoadedModel, base_weights, keep_base_weights, load_base
from ..model.model_files import resolve_model_path
from ..runs import checkpoints as ckpt
from ..runs.run_folder import ADAPTER_CONFIG, ADAPTER_FILE, RunFolder, checkpoint_step, run_of


@dataclass
class AdapterSource:
    """Where an adapter lives and what trained it."""

    path: Path  # the folder holding adapters.safetensors and adapter_config.json
    run_dir: Path  # the run it belongs to
    step: int | None  # the checkpoint's step; None for the run folder's own (latest) adapter
    config: dict[str, Any]

    @property
    def uses_template(self) -> bool:
        """Prompts get the chat template unless the run trained on plain text rows."""
        trained_on = format_named(self.config.get("data_format"))
        return trained_on is None or isinstance(trained_on, TurnsFormat)

    @property
    def trained_elsewhere(self) -> bool:
        """A folder mlx_lm.lora or mlx-lm-lora wrote (run_import.py adds one as a run): no metrics.jsonl, so
        which batches its training validated on is not known here."""
        return not (self.run_dir / RunFolder.METRICS).exists()

    @property
    def is_vision(self) -> bool:
        """The run trained a vision-language model on picture rows (mlx-vlm's classes: vision_run.py)."""
        return self.config.get("data_format") == "vision"

    @property
    def label(self) -> str:
        return f"{self.run_dir.name} @ step {self.step}" if self.step is not None else self.run_dir.name


def read_adapter(path: str | Path) -> AdapterSource:
    """Check an adapter folder and read its config; the message says what is missing."""
    path = Path(path).expanduser()
    if not path.is_dir():
        raise UserError(f"{path}: no such adapter folder; give a run folder or one of its checkpoints")
    missing = [f for f in (ADAPTER_FILE, ADAPTER_CONFIG) if not (path / f).is_file()]
    if missing:
        hint = ""
        if ckpt.list_checkpoints(path):
            hint = " (the run has checkpoints; give one of them)"
        raise UserError(
            f"{path}: no {' or '.join(missing)} here{hint}; an adapter folder is a run folder "
            "that has saved at least once, or one of its checkpoints/NNNNNNN folders"
        )
    try:
        config = json.loads((path / ADAPTER_CONFIG).read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"{path / ADAPTER_CONFIG}: cannot read it ({e})") from e
    return AdapterSource(path, run_of(path).path, checkpoint_step(path), config)


def default_adapter(run_dir: str | Path) -> AdapterSource:
    """The best checkpoint by validation loss, else the latest, else the run folder's own adapter."""
    run_dir = Path(run_dir)
    chosen = ckpt.best_checkpoint(run_dir) or ckpt.latest_checkpoint(run_dir)
    return read_adapter(chosen.path if chosen else run_dir)


def checkpoint_choices(run_dir: str | Path) -> tuple[list[tuple[str, str]], str | None]:
    """(label, folder) of each checkpoint, newest first, and the default: the best, else the latest."""
    run_dir = Path(run_dir)
    best = ckpt.best_checkpoint(run_dir)
    found = ckpt.list_checkpoints(run_dir)
    choices = []
    for c in reversed(found):
        val = f", val {c.val_loss:.4f}" if c.val_loss is not None else ""
        choices.append((f"{'best · ' if best and c.step == best.step else ''}step {c.step}{val}", str(c.path)))
    default = best or (found[-1] if found else None)
    return choices, str(default.path) if default else None


def base_model_of(adapter: AdapterSource, model: str | None = None) -> Path:
    """The base model folder: the one given, else the one the adapter was trained on."""
    name = model or adapter.config.get("model")
    if not name:
        raise UserError(f"{adapter.path / ADAPTER_CONFIG} does not name its base model; give --model")
    return resolve_model_path(name)


def quantized_on_load(adapter: AdapterSource) -> dict[str, Any] | None:
    """bits/group_size when training quantized a full-precision base on load, else None."""
    if not adapter.config.get("quantized_on_load"):
        return None
    return {"group_size": 64, **(adapter.config.get("base_quantization") or {})}


def base_as_trained(adapter: AdapterSource, model: str | None = None) -> tuple[Path, dict[str, Any], dict | None]:
    """(base folder, its config.json, the quantization the adapter trained on) without loading weights."""
    path = base_model_of(adapter, model)
    config = json.loads((path / "config.json").read_text())
    return path, config, config.get("quantization") or quantized_on_load(adapter)


def load_with_adapter(model: str | Path | None, adapter: AdapterSource | None) -> LoadedModel:
    """Load the base (quantized as in training) and put the adapter on it."""
    from mlx_lm.tuner.utils import load_adapters

    if adapter is None:
        if model is None:
            raise UserError("give a model (--model) or an adapter folder (--adapter-path)")
        return load_base(resolve_model_path(model))
    path = base_model_of(adapter, str(model) if model else None)
    quant = quantized_on_load(adapter) or {}
    loaded = load_base(path, quant.get("bits"), quant.get("group_size", 64))
    if adapter.config.get("fine_tune_type") == "full":  # the weights it replaces stay at hand for base_view
        params = dict(tree_flatten(loaded.model.parameters()))
        trained = cast(dict[str, mx.array], mx.load(str(adapter.path / ADAPTER_FILE)))
        keep_base_weights(loaded.model, [k for k in trained if k in params])
    try:
        load_adapters(loaded.model, str(adapter.path))
    except (ValueError, KeyError) as e:
        raise ModelError(
            f"{adapter.path}: this adapter does not fit {path.name} ({e}); use the base model it "
            f"was trained on ({adapter.config.get('model', 'see adapter_config.json')})"
        ) from e
    loaded.model.eval()
    return loaded


def adapter_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The LoRA/DoRA layers (anything wrapping a frozen `linear` with low-rank factors)."""
    return [(name, m) for name, m in model.named_modules() if hasattr(m, "lora_a") and hasattr(m, "linear")]


@contextlib.contextmanager
def base_view(model: nn.Module) -> Iterator[nn.Module]:
    """Inside the block the model computes exactly what the base computes; restored on exit."""
    layers = adapter_layers(model)
    # the grouped layers of a model being trained (grouped_lora.py); a full fine-tuning's base weights
    with adapters_off(model), base_weights(model):
        if not layers:
            yield model
            return
        model.update_modules(tree_unflatten([(name, m.linear) for name, m in layers]))
        try:
            yield model
        finally:
            model.update_modules(tree_unflatten(layers))
