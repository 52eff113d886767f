"""What a setting is: its key, flag, help, type, range or choices, default, and place in the Settings tab.

Each training setting is declared once, as a field of `TrainConfig` made with `setting()` (core/config.py).
The command line's flags and --help, the YAML reader, `TrainConfig.validate()`, the Settings and Data tabs,
presets and "Copy CLI command" all read these declarations, so they cannot disagree.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

SETTING = "setting"  # the dataclass field metadata key that holds a field's Setting


class _NoOff:
    """The `off` of a setting that has no special value (None and -1 are real ones)."""

    def __repr__(self) -> str:
        return "NO_OFF"


NO_OFF: Any = _NoOff()


@dataclass(frozen=True)
class Setting:
    label: str  # as the app shows it
    help: str  # --help and the tooltip: what it does and what it costs
    # int, float, sci (a float typed as text: 1e-4), bool, choice, keys (a list of names), text, file or mapping
    kind: str = "text"
    group: str | None = None  # the Settings tab's box; None: set elsewhere (Data or Model tab, the CLI, YAML)
    minimum: float | None = None
    maximum: float | None = None
    above_minimum: bool = False  # the minimum itself is refused ("above 0")
    below_maximum: bool = False  # the maximum itself is refused ("below 1")
    decimals: int = 2  # for "float": the spin box's precision
    choices: tuple[Any, ...] = ()
    off: Any = NO_OFF  # a value outside the range with its own meaning: None or -1
    lowest_text: str = ""  # what a spin box shows at its lowest value ("all", "none", "auto (5%)")
    unit: str = ""  # shown after numbers: "GB"
    required: str = ""  # the message when the value is empty
    flag: bool = True  # has a command-line flag
    key: str = ""  # filled in from the field: "batch_size", "lora_parameters.rank"
    default: Any = None  # filled in from the field

    # ------------------------------------------------------------ names

    @property
    def name(self) -> str:
        """The key inside its mapping: 'rank' for 'lora_parameters.rank'."""
        return self.key.rsplit(".", 1)[-1]

    @property
    def flag_name(self) -> str:
        """'--batch-size', '--lora-rank'; a switch that is on by default is turned off with '--no-...'."""
        stem = self.key.replace("lora_parameters.", "lora_").replace("_", "-")
        return f"--no-{stem}" if self.kind == "bool" and self.default else f"--{stem}"

    def shown(self, value: Any) -> str:
        """A value as --help and messages write it."""
        if self.has_off and value == self.off and self.lowest_text:
            return self.lowest_text
        if isinstance(value, list):
            return ",".join(map(str, value))
        return _number(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)

    def describe(self) -> str:
        """The help text with its range, choices and default, for --help."""
        extra = []
        if self.choices:
            extra.append("one of " + ", ".join(map(str, self.choices)))
        elif self.kind in ("int", "float", "sci"):
            extra.append(self.range_text())
        shows_default = self.default not in (None, "", []) or (self.has_off and self.lowest_text)
        if self.kind != "bool" and shows_default:
            unit = f" {self.unit}" if self.unit and not (self.has_off and self.default == self.off) else ""
            extra.append(f"default: {self.shown(self.default)}{unit}")
        return self.help + (f" ({'; '.join(extra)})" if extra else "")

    # ------------------------------------------------------------ values

    @property
    def has_off(self) -> bool:
        return self.off is not NO_OFF

    @property
    def step(self) -> float:
        """The smallest change a spin box makes."""
        return 1 if self.kind == "int" else 10**-self.decimals

    def lowest(self) -> float:
        """A spin box's lowest value: the minimum, or one step below it standing for `off`."""
        low = self.minimum if self.minimum is not None else 0
        if self.has_off and not self.above_minimum:
            return low - self.step
        return low

    def range_text(self) -> str:
        parts = []
        if self.minimum is not None:
            parts.append(f"{'above' if self.above_minimum else 'at least'} {_number(self.minimum)}")
        if self.maximum is not None:
            parts.append(f"{'below' if self.below_maximum else 'at most'} {_number(self.maximum)}")
        text = " and ".join(parts) or "any number"
        if self.has_off and self.off is not None:
            text += f", or {self.off} for {self.lowest_text}"
        return text

    def coerce(self, value: Any) -> Any:
        """A value read from YAML or a flag in this setting's type, where that is unambiguous ('1e-4' -> 0.0001)."""
        if self.kind in ("float", "sci") and isinstance(value, (int, str)) and not isinstance(value, bool):
            try:
                return float(value)
            except ValueError:
                return value
        if value is None and self.kind in ("text", "file") and self.default == "":
            return ""  # mlx-lm writes an unset path as null
        if self.kind == "keys" and isinstance(value, str):
            return [k.strip() for k in value.split(",") if k.strip()] or None
        return value

    def problem(self, value: Any) -> str | None:
        """Why a value is refused, in words that name the fix; None when it is fine."""
        if self.has_off and value == self.off:
            return None
        if value in (None, "") and self.required:
            return self.required
        if self.choices:
            return None if value in self.choices else f"{value!r} is not one of {', '.join(map(str, self.choices))}"
        if self.kind == "bool":
            return None if isinstance(value, bool) else f"must be true or false, got {value!r}"
        if self.kind in ("int", "float", "sci"):
            return self._number_problem(value)
        if self.kind == "keys":
            ok = value is None or (isinstance(value, list) and all(isinstance(k, str) and k for k in value))
            return None if ok else f"must be a list of layer names, got {value!r}"
        if self.kind == "mapping":
            return None if value is None or isinstance(value, dict) else f"must be a mapping, got {value!r}"
        return None if isinstance(value, str) else f"must be text, got {value!r}"

    def _number_problem(self, value: Any) -> str | None:
        whole = self.kind == "int"
        if isinstance(value, bool) or not isinstance(value, int if whole else (int, float)):
            return f"must be {'a whole number' if whole else 'a number'}, got {value!r}"
        low, high = self.minimum, self.maximum
        too_low = low is not None and (value <= low if self.above_minimum else value < low)
        too_high = high is not None and (value >= high if self.below_maximum else value > high)
        return f"must be {self.range_text()}, got {self.shown(value)}" if too_low or too_high else None


def _number(value: float) -> str:
    """1e-05, 0.5, 1024, 1048576: whole numbers in full, others as short as they go."""
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else f"{value:g}"


def setting(default: Any, label: str, help: str, *spec: Any, **named: Any) -> Any:
    """A TrainConfig field together with its declaration (the rest of Setting's fields, in order or by name)."""
    meta = {SETTING: Setting(label, help, *spec, **named)}
    if isinstance(default, (dict, list)):
        return dataclasses.field(default_factory=lambda: _copy(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _copy(value: Any) -> Any:
    return (
        {k: _copy(v) for k, v in value.items()}
        if isinstance(value, dict)
        else [_copy(v) for v in value]
        if isinstance(value, list)
        else value
    )


def declared(cls: type, extra: dict[str, tuple[Setting, ...]] | None = None) -> tuple[Setting, ...]:
    """Every setting of a dataclass made with `setting()`, in declaration order, with key and default filled in.

    `extra` maps a mapping field to its own settings (lora_parameters -> rank, scale, ...), listed after it."""
    out: list[Setting] = []
    for f in dataclasses.fields(cls):
        spec = f.metadata.get(SETTING)
        if spec is None:
            continue
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            raise TypeError(f"setting {f.name} has no default")
        out.append(dataclasses.replace(spec, key=f.name, default=default))
        for sub in (extra or {}).get(f.name, ()):
            out.append(dataclasses.replace(sub, key=f"{f.name}.{sub.key}"))
    return tuple(out)
