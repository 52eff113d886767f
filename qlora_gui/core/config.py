"""The trainer's settings: one dataclass, read from mlx-lm's YAML keys plus ours.

A "step" is one optimizer update everywhere here (`iters`, `save_every`,
`steps_per_eval`, `steps_per_report`). mlx-lm counts micro-batches instead, so
with gradient accumulation N, our `iters` equals mlx-lm's `iters / N`.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError

OPTIMIZERS = ("adamw", "adam", "sgd")
FINE_TUNE_TYPES = ("lora", "dora")
QUANT_BITS = (4, 8)
GROUP_SIZES = (32, 64, 128)

# mlx-lm lora keys we read but do not act on; they are reported, not rejected.
IGNORED_MLX_KEYS = {"train", "wandb", "report_to", "project_name", "hf_dataset", "resume_adapter_file",
                    "prompt_feature", "completion_feature", "text_feature", "chat_feature",
                    "clear_cache_threshold"}


def default_lora_parameters() -> dict[str, Any]:
    return {"rank": 8, "scale": 20.0, "dropout": 0.0}


@dataclass
class TrainConfig:
    model: str = ""
    data: str = ""
    adapter_path: str = ""
    fine_tune_type: str = "lora"
    num_layers: int = 16  # -1: every layer
    lora_parameters: dict[str, Any] = field(default_factory=default_lora_parameters)
    quantize_bits: int | None = None  # quantize a full-precision base on load (QLoRA)
    quantize_group_size: int = 64
    batch_size: int = 4
    grad_accumulation_steps: int = 1
    epochs: int = 1
    iters: int | None = None  # a step budget; overrides epochs
    learning_rate: float = 1e-5
    optimizer: str = "adamw"
    optimizer_config: dict[str, Any] = field(default_factory=dict)
    lr_schedule: dict[str, Any] | None = None  # mlx-lm's schedule dict; None: warmup then cosine
    warmup_steps: int | None = None  # None: 5% of all steps
    grad_clip: float = 1.0  # global-norm clipping; 0 turns it off
    max_seq_length: int = 2048
    mask_prompt: bool = False
    valid_fraction: float = 0.1
    steps_per_report: int = 10
    steps_per_eval: int = 200
    val_batches: int = 25  # -1: the whole validation set
    save_every: int = 100
    keep_last: int = 3  # checkpoints kept besides the best
    test: bool = False
    test_batches: int = -1
    seed: int = 0
    max_bad_steps: int = 5
    memory_limit_gb: float | None = None
    ram_warn_share: float = 0.9
    clear_cache_gb: float = 2.0
    fast_quant: bool = True  # CPU backend: dequantize + BLAS matmul for the frozen quantized base
    grad_checkpoint: bool = False  # recompute each block in the backward: less memory, about a third more time
    resume: bool = False

    @property
    def lora_rank(self) -> int:
        return int(self.lora_parameters.get("rank", 8))

    def validate(self) -> None:
        """Raise ConfigError naming the first bad setting and what to use instead."""
        def bad(name: str, why: str) -> None:
            raise ConfigError(f"setting '{name}': {why}", setting=name, why=why)

        if not self.model:
            bad("model", "no model given; pick a model folder")
        if not self.data:
            bad("data", "no dataset given; pick a folder or a .jsonl/.json file")
        if self.fine_tune_type not in FINE_TUNE_TYPES:
            bad("fine_tune_type", f"'{self.fine_tune_type}' is not one of {', '.join(FINE_TUNE_TYPES)}")
        if self.optimizer not in OPTIMIZERS:
            bad("optimizer", f"'{self.optimizer}' is not one of {', '.join(OPTIMIZERS)}")
        if self.quantize_bits is not None and self.quantize_bits not in QUANT_BITS:
            bad("quantize_bits", f"{self.quantize_bits} is not 4 or 8")
        if self.quantize_group_size not in GROUP_SIZES:
            bad("quantize_group_size", f"{self.quantize_group_size} is not 32, 64 or 128")
        for name in ("batch_size", "grad_accumulation_steps", "epochs", "steps_per_report", "steps_per_eval",
                     "save_every", "max_seq_length", "keep_last", "max_bad_steps"):
            if int(getattr(self, name)) < 1:
                bad(name, f"must be at least 1, got {getattr(self, name)}")
        for name in ("val_batches", "test_batches"):
            if int(getattr(self, name)) == 0 or int(getattr(self, name)) < -1:
                bad(name, f"use -1 for all batches, or at least 1; got {getattr(self, name)}")
        if self.iters is not None and self.iters < 1:
            bad("iters", f"must be at least 1, got {self.iters}")
        if not self.learning_rate > 0:
            bad("learning_rate", f"must be above 0, got {self.learning_rate}")
        if self.num_layers == 0 or self.num_layers < -1:
            bad("num_layers", "use a positive number of layers, or -1 for all of them")
        if not 0 <= self.valid_fraction < 1:
            bad("valid_fraction", f"must be in [0, 1), got {self.valid_fraction}")
        if self.grad_clip < 0:
            bad("grad_clip", "must be 0 (off) or positive")
        lp = self.lora_parameters
        if "alpha" in lp and "scale" not in lp:
            bad("lora_parameters", "mlx-lm stores the LoRA strength as 'scale' (= alpha / rank); rename 'alpha'")
        if int(lp.get("rank", 0)) < 1:
            bad("lora_parameters.rank", f"must be at least 1, got {lp.get('rank')}")
        if not 0 <= float(lp.get("dropout", 0.0)) < 1:
            bad("lora_parameters.dropout", f"must be in [0, 1), got {lp.get('dropout')}")
        if self.memory_limit_gb is not None and self.memory_limit_gb <= 0:
            bad("memory_limit_gb", "must be positive")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


FIELD_NAMES = {f.name for f in dataclasses.fields(TrainConfig)}


def config_from_dict(values: dict[str, Any], base: TrainConfig | None = None) -> tuple[TrainConfig, list[str]]:
    """Apply mlx-lm/our keys onto a config. Returns it and warnings about ignored keys."""
    cfg = dataclasses.replace(base) if base else TrainConfig()
    warnings = []
    for key, value in values.items():
        key = key.replace("-", "_")
        if key == "steps_per_save":  # mlx-lm's TrainingArgs name for save_every
            key = "save_every"
        if key in IGNORED_MLX_KEYS:
            warnings.append(f"config key '{key}' is an mlx-lm option this trainer does not use; ignored")
            continue
        if key not in FIELD_NAMES:
            near = difflib.get_close_matches(key, sorted(FIELD_NAMES), n=1)
            hint = f"; did you mean '{near[0]}'?" if near else ""
            raise ConfigError(f"unknown config key '{key}'{hint}")
        if key == "lora_parameters":
            merged = default_lora_parameters()
            merged.update(value or {})
            value = merged
        setattr(cfg, key, value)
    return cfg, warnings


def load_config_file(path: str | Path) -> tuple[TrainConfig, list[str]]:
    path = Path(path)
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the config ({e.strerror})") from e
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{line}: not valid YAML ({getattr(e, 'problem', e)})") from e
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: the config must be a mapping of key: value lines")
    return config_from_dict(values)
