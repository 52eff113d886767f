"""Settings as command-line flags: the parser's arguments and the command that repeats a config, from SETTINGS."""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Iterable
from typing import Any

from ..config import SETTING_BY_KEY, SETTINGS, TrainConfig
from ..setting import Setting

# PEFT's name for the LoRA strength; mlx-lm stores scale = alpha / rank. A conversion, not a setting of its own.
ALPHA_FLAG = "--lora-alpha"
_TYPES = {"int": int, "float": float, "sci": float, "text": str, "file": str, "keys": str}


def flagged(keys: Iterable[str] | None = None) -> list[Setting]:
    """The settings that have flags: all of them, or those named, in SETTINGS order."""
    wanted = set(keys) if keys is not None else None
    return [s for s in SETTINGS if s.flag and (wanted is None or s.key in wanted)]


def _dest(s: Setting) -> str:
    return s.key.replace(".", "__")


def add_setting_flags(parser: argparse.ArgumentParser, keys: Iterable[str] | None = None) -> None:
    """One flag per setting, grouped as the Settings tab groups them; each defaults to None so that only what
    was typed overrides a config file."""
    groups: dict[str, argparse._ArgumentGroup] = {}
    for s in flagged(keys):
        title = s.group or "model, data and run folder"
        group = groups.get(title) or groups.setdefault(title, parser.add_argument_group(title.lower()))
        text = s.describe().replace("%", "%%")
        if s.kind == "bool":
            group.add_argument(
                s.flag_name,
                dest=_dest(s),
                action="store_const",
                const=not s.default,
                default=None,
                help=("turn off: " if s.default else "") + text,
            )
        else:
            typ = type(s.choices[0]) if s.choices else _TYPES.get(s.kind, str)
            group.add_argument(
                s.flag_name,
                dest=_dest(s),
                type=typ,
                default=None,
                help=text,
                metavar="FILE" if s.kind == "file" else s.name.upper(),
            )
    if keys is None or "lora_parameters.scale" in set(keys):
        (groups.get("Adapter") or parser).add_argument(
            ALPHA_FLAG,
            dest="lora_alpha",
            type=float,
            default=None,
            help="PEFT-style alpha; stored as scale = alpha / rank",
        )


def flag_values(args: argparse.Namespace, keys: Iterable[str] | None = None) -> dict[str, Any]:
    """{setting key: value} for each flag given on the command line, in the settings' own types."""
    given = {}
    for s in flagged(keys):
        value = getattr(args, _dest(s), None)
        if value is not None:
            given[s.key] = s.coerce(value)
    alpha = getattr(args, "lora_alpha", None)
    if alpha is not None:
        given["lora_parameters.alpha"] = alpha
    return given


def settings_from_flags(args: argparse.Namespace, keys: Iterable[str]) -> dict[str, Any]:
    """{setting key: value} for the named settings: what was given, else each one's default."""
    keys = list(keys)
    return {**{k: SETTING_BY_KEY[k].default for k in keys}, **flag_values(args, keys)}


def apply_flag_values(cfg: TrainConfig, given: dict[str, Any]) -> None:
    """Put flag values into a config; --lora-alpha becomes scale = alpha / rank."""
    lora = dict(cfg.lora_parameters)
    for key, value in given.items():
        if key.startswith("lora_parameters.") and value is None:
            lora.pop(key.split(".", 1)[1], None)  # unset: mlx-lm's default (every linear layer for keys)
        elif key.startswith("lora_parameters."):
            lora[key.split(".", 1)[1]] = value
        else:
            setattr(cfg, key, value)
    if "alpha" in lora:
        lora["scale"] = lora.pop("alpha") / int(lora.get("rank", SETTING_BY_KEY["lora_parameters.rank"].default))
    cfg.lora_parameters = lora


def train_command(cfg: TrainConfig) -> str:
    """The `qlora-gui train` command for these settings: flags only where they differ from the defaults."""
    parts = ["qlora-gui", "train"]
    for s in flagged():
        value = cfg.value(s.key)
        if s.key == "resume" or value == s.default or (value is None and s.default is None):
            continue
        if s.kind == "bool":
            parts.append(s.flag_name)
        else:
            parts += [s.flag_name, s.shown(value) if not (s.has_off and value == s.off) else str(value)]
    return shlex.join(parts)
