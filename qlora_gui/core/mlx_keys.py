"""mlx-lm's config as mlx_lm.lora reads it: its YAML number rule, and its keys that have no setting of their own.

Each of those keys is applied to a setting, accepted quietly where it states what this trainer always does, or
refused with the reason: none is silently ignored.
"""

from __future__ import annotations

import inspect
import re
import sys
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError
from .memory import GB

# mlx-lm's YAML loader adds this resolver so that `1e-5` (no dot) reads as a number, as YAML 1.2 has it; ours
# matches it (mlx_lm/lora.py's yaml_loader), and strings in that form given by other means read as numbers too.
MLX_FLOAT = re.compile(
    r"""^(?:
     [-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+][0-9]+)?
    |[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)


class MlxYamlLoader(yaml.SafeLoader):
    """yaml.SafeLoader with mlx-lm's float resolver (a subclass: the global SafeLoader stays as it is)."""


MlxYamlLoader.add_implicit_resolver("tag:yaml.org,2002:float", MLX_FLOAT, list("-+0123456789."))

# mlx-lm's data keys naming a row's fields; ours are these names (formats.py), and hf_dataset may rename.
FEATURE_KEYS = {
    "prompt_feature": "prompt",
    "completion_feature": "completion",
    "text_feature": "text",
    "chat_feature": "messages",
}
# mlx-lm keys whose value states what this trainer always does: accepted quietly with that value, refused with
# the reason otherwise.
QUIET_MLX_KEYS: dict[str, tuple[Any, str]] = {
    "train": (True, "`qlora-gui train` always trains; to only test an adapter use `qlora-gui evaluate`"),
    "config": (None, "a config file cannot name another one; pass each file with -c"),
}
# Experiment trackers for report_to (comma-separated, as mlx-lm reads it): the package each one needs and the
# optional extra that installs it.
TRACKERS = {
    "tensorboard": ("tensorboardX", "tensorboard"),
    "wandb": ("wandb", "wandb"),
    "swanlab": ("swanlab", "swanlab"),
    "trackio": ("trackio", "trackio"),
}


def tracker_names(report_to: str) -> list[str]:
    return [name.strip().lower() for name in (report_to or "").split(",") if name.strip()]


def report_to_problem(report_to: Any) -> str | None:
    """Why report_to cannot be used (an unknown tracker, or its package missing), naming the fix."""
    import importlib.util

    if not isinstance(report_to, str):
        return f"must be tracker names separated by commas, e.g. tensorboard,wandb; got {report_to!r}"
    for name in tracker_names(report_to):
        if name not in TRACKERS:
            return f"{name!r} is not a tracker; use {', '.join(TRACKERS)}, separated by commas"
        package, extra = TRACKERS[name]
        imported = sys.modules.get(package, ...)  # None: refused by the import system
        if imported is None or (imported is ... and importlib.util.find_spec(package) is None):
            return (
                f"{name} needs the {package} package, which is not installed: install the optional extra with "
                f"pip install 'qlora-gui[{extra}]'"
            )
    return None


# mlx-lm's optimizers (lora.py's choices), by our name: the mlx.optimizers class each one is.
OPTIMIZER_CLASS_NAMES = {"adamw": "AdamW", "adam": "Adam", "sgd": "SGD", "muon": "Muon", "adafactor": "Adafactor"}

# Every mlx-lm key without a field of its own; each is applied, accepted or refused by mlx_only_values.
MLX_ONLY_KEYS = {*QUIET_MLX_KEYS, "wandb", "clear_cache_threshold", *FEATURE_KEYS}


def yaml_numbers(value: Any) -> Any:
    """Strings that mlx-lm's YAML loader reads as numbers ('1e-5'), as numbers, inside lists and mappings too."""
    if isinstance(value, str) and MLX_FLOAT.match(value):
        return float(value.replace("_", ""))
    if isinstance(value, list):
        return [yaml_numbers(v) for v in value]
    if isinstance(value, dict):
        return {k: yaml_numbers(v) for k, v in value.items()}
    return value


def size_in_bytes(value: Any, key: str) -> int:
    """A size as mlx-lm's _parse_size reads it: bytes, or a number with M, MB, G or GB (powers of ten)."""
    units = {"": 1, "M": 10**6, "MB": 10**6, "G": 10**9, "GB": 10**9}
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
        return int(value)
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]*)?)\s*([A-Za-z]*)\s*", str(value))
    if match is None or match.group(2).upper() not in units:
        raise ConfigError(f"config key '{key}': {value!r} is not a size; write bytes or e.g. 2GB, 500MB")
    return int(float(match.group(1)) * units[match.group(2).upper()])


def mlx_only_values(key: str, value: Any) -> dict[str, Any] | None:
    """The settings one of mlx-lm's keys without a field of its own sets ({} when none); None when `key` is not
    one of them. ConfigError, with the reason, for a value this trainer refuses."""
    if key in QUIET_MLX_KEYS:
        expected, why = QUIET_MLX_KEYS[key]
        if value is not None and value != expected:
            raise ConfigError(f"config key '{key}: {value}' is refused: {why}")
        return {}
    if key == "wandb":  # older mlx-lm: `wandb: PROJECT` reported to wandb under that project
        return {"report_to": "wandb", "project_name": value} if value else {}
    if key == "clear_cache_threshold":  # mlx-lm: clear MLX's cache between steps when it holds more bytes
        return {"clear_cache_gb": size_in_bytes(value, key) / GB}
    if key in FEATURE_KEYS:  # mlx-lm reads local rows by these names too; ours are fixed, hf_dataset renames
        if value not in (None, FEATURE_KEYS[key]):
            raise ConfigError(
                f"config key '{key}: {value}' is refused: local data files are read by their standard field "
                f"names ({FEATURE_KEYS[key]!r} here); rename the field in the files, or set {key} inside hf_dataset"
            )
        return {}
    return None


def lr_schedule_problem(schedule: Any) -> str | None:
    """Why mlx-lm's build_schedule would fail on this lr_schedule, in words; None when it builds."""
    if schedule is None:
        return None
    if not isinstance(schedule, dict):
        return f"must be a mapping with name, arguments and optionally warmup and warmup_init, got {schedule!r}"
    import mlx.optimizers as optim

    module = optim.schedulers
    names = sorted(  # the schedules themselves: not join_schedules (it takes schedules), not typing names
        n for n, f in vars(module).items() if inspect.isfunction(f) and f.__module__ == module.__name__
    )
    names.remove("join_schedules")
    name = schedule.get("name")
    if name not in names:
        return f"name {name!r} is not a schedule of mlx.optimizers; use one of {', '.join(names)}"
    unknown = set(schedule) - {"name", "arguments", "warmup", "warmup_init"}
    if unknown:
        return f"unknown key {sorted(unknown)[0]!r}; the keys are name, arguments, warmup and warmup_init"
    arguments = schedule.get("arguments")
    if not isinstance(arguments, list) or not arguments:
        return f"arguments must be a list (passed to mlx.optimizers.{name}), e.g. [1e-5, 1000, 1e-7]"
    for key in ("warmup", "warmup_init"):
        if isinstance(schedule.get(key), str) or isinstance(schedule.get(key), bool):
            return f"{key} must be a number, got {schedule[key]!r}"
    from mlx_lm.tuner.utils import build_schedule

    try:
        build_schedule(schedule)(0)
    except (TypeError, ValueError) as e:
        return f"mlx.optimizers.{name}{tuple(arguments)} fails: {e}"
    return None


def optimizer_config_problem(config: Any) -> str | None:
    """Why an optimizer_config cannot be used, naming the fix; None when every name and argument is known."""
    import mlx.optimizers as optim

    if not isinstance(config, dict):
        return f"must be a mapping from optimizer name to its arguments, got {config!r}"
    for name, options in config.items():
        if name not in OPTIMIZER_CLASS_NAMES:
            return (
                f"{name!r} is not an optimizer; optimizer_config maps each optimizer's name to its arguments, "
                f"e.g. {{adamw: {{weight_decay: 0.05}}}} ({', '.join(OPTIMIZER_CLASS_NAMES)})"
            )
        if options is None:
            continue
        if not isinstance(options, dict):
            return f"{name}: must be a mapping of arguments, got {options!r}"
        accepted = [
            p for p in inspect.signature(getattr(optim, OPTIMIZER_CLASS_NAMES[name])).parameters if p != "learning_rate"
        ]
        for option in options:
            if option not in accepted:
                return (
                    f"{name}: {option!r} is not an argument of mlx.optimizers.{OPTIMIZER_CLASS_NAMES[name]}; "
                    f"its arguments are {', '.join(accepted)}"
                )
    return None


def read_yaml_mapping(path: str | Path) -> dict[str, Any]:
    """A YAML file of key: value lines; ConfigError with the file and line when it is not one."""
    path = Path(path)
    try:
        values = yaml.load(path.read_text(encoding="utf-8"), MlxYamlLoader) or {}
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the config ({e.strerror})") from e
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{line}: not valid YAML ({getattr(e, 'problem', e)})") from e
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: the config must be a mapping of key: value lines")
    return values


# mlx-lm's hf_dataset: its keys, and what is wrong with a value
FEATURES = {"prompt_feature": "prompt", "completion_feature": "completion", "chat_feature": "messages",
            "text_feature": "text"}  # fmt: skip
ENTRY_KEYS = {"path", "config", "train_split", "valid_split", "test_split", "mask_prompt", *FEATURES}


def entries(value: Any) -> list[dict[str, Any]]:
    """hf_dataset as a list of entries (mlx-lm takes one mapping or a list, concatenated)."""
    return [value] if isinstance(value, dict) else list(value or [])


def hf_dataset_problem(value: Any) -> str | None:
    """Why an hf_dataset value cannot be read, naming the fix; None when it is fine."""
    if value is None:
        return None
    if not isinstance(value, (dict, list)) or not value:
        return f"must be a mapping (path, train_split, ...) or a list of them, got {value!r}"
    for i, entry in enumerate(entries(value)):
        where = "" if isinstance(value, dict) else f"entry {i + 1}: "
        if not isinstance(entry, dict):
            return f"{where}must be a mapping with path, train_split, ..., got {entry!r}"
        if "name" in entry and "path" not in entry:
            return f"{where}mlx-lm names the dataset 'path' (was 'name' in older versions); rename it"
        if not isinstance(entry.get("path"), str) or not entry["path"]:
            return f"{where}needs 'path', the dataset's name on the Hub or a local folder"
        unknown = sorted(set(entry) - ENTRY_KEYS)
        if unknown:
            return f"{where}unknown key {unknown[0]!r}; the keys are {', '.join(sorted(ENTRY_KEYS))}"
        if not isinstance(entry.get("config", {}), dict):
            return f"{where}config must be a mapping of load_dataset arguments, got {entry['config']!r}"
    return None
