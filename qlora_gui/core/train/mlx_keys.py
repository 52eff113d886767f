"""mlx-lm's config as mlx_lm.lora reads it: its YAML number rule, and its keys that have no setting of their own.

Each of those keys is applied to a setting, accepted quietly where it states what this trainer always does, or
refused with the reason: none is silently ignored.
"""

from __future__ import annotations

import inspect
import re
from typing import Any

import yaml

from ..errors import ConfigError
from ..memory import GB

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
# mlx-lm keys this trainer does not act on, with the reason; a config that sets them is refused.
REFUSED_MLX_KEYS: dict[str, str] = {
    "report_to": "experiment trackers are not supported; metrics.jsonl in the run folder holds every value",
    "project_name": "experiment trackers are not supported; metrics.jsonl in the run folder holds every value",
    "wandb": "experiment trackers are not supported; metrics.jsonl in the run folder holds every value",
}

# mlx-lm's optimizers (lora.py's choices), by our name: the mlx.optimizers class each one is.
OPTIMIZER_CLASS_NAMES = {"adamw": "AdamW", "adam": "Adam", "sgd": "SGD", "muon": "Muon", "adafactor": "Adafactor"}

# Every mlx-lm key without a field of its own; each is applied, accepted or refused by mlx_only_values.
MLX_ONLY_KEYS = {*QUIET_MLX_KEYS, *REFUSED_MLX_KEYS, "clear_cache_threshold", *FEATURE_KEYS}


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
    if key in REFUSED_MLX_KEYS:
        if value not in (None, "", False):
            raise ConfigError(f"config key '{key}' is refused: {REFUSED_MLX_KEYS[key]}")
        return {}
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
