"""Rewards for GRPO: built-ins that need no code, and the user's own functions from a Python file.

Every reward is called as `reward(prompts, completions, answers) -> list[float]`, one number per completion
(`answers` holds each row's reference answer, None where the row gives none). A run's rewards are checked on
its first rows before any weights load: a file that does not import, a function that raises or returns the
wrong number of values is reported with the function's name and FILE:LINE. Later, a reward that fails warns
once per step and counts 0 for that group; the run goes on.
"""

from __future__ import annotations

import ast
import importlib.util
import inspect
import json
import math
import re
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UserError

RewardFn = Callable[[list[str], list[str], list[str | None]], Sequence[float]]
CHECK_ROWS = 2  # the first rows each reward is tried on before any weights load
_NUMBER = re.compile(r"[-+]?\d[\d,]*(?:\.\d+)?(?:[eE][-+]?\d+)?|[-+]?\.\d+")


def normalized(text: str | None) -> str:
    """Spaces collapsed and trimmed, lower case: what "exact" compares."""
    return " ".join((text or "").split()).lower()


def last_number(text: str | None) -> float | None:
    """The last number written in the text ("1,234.5" reads as 1234.5); None when there is none."""
    found = _NUMBER.findall(text or "")
    if not found:
        return None
    try:
        return float(found[-1].replace(",", ""))
    except ValueError:
        return None


def _json_text(text: str) -> str:
    """The completion without a Markdown code fence around it."""
    body = text.strip()
    if body.startswith("```"):
        body = body.split("\n", 1)[1] if "\n" in body else ""
        body = body.rsplit("```", 1)[0]
    return body


def _parses(text: str) -> bool:
    try:
        json.loads(_json_text(text))
        return True
    except ValueError:
        return False


@dataclass(frozen=True)
class RewardOptions:
    """What the built-ins read besides the rows: the format pattern and the length bounds (characters)."""

    pattern: str
    min_chars: int
    max_chars: int


def builtin_rewards(options: RewardOptions) -> dict[str, RewardFn]:
    """The built-ins by name, in the order --help lists them."""
    pattern = re.compile(options.pattern)

    def exact(prompts: list[str], completions: list[str], answers: list[str | None]) -> list[float]:
        return [
            float(a is not None and normalized(c) == normalized(a)) for c, a in zip(completions, answers, strict=True)
        ]

    def contains(prompts: list[str], completions: list[str], answers: list[str | None]) -> list[float]:
        return [float(bool(a) and normalized(a) in normalized(c)) for c, a in zip(completions, answers, strict=True)]

    def format_(prompts: list[str], completions: list[str], answers: list[str | None]) -> list[float]:
        return [float(pattern.search(c.strip()) is not None) for c in completions]

    def numeric(prompts: list[str], completions: list[str], answers: list[str | None]) -> list[float]:
        out = []
        for c, a in zip(completions, answers, strict=True):
            got, want = last_number(c), last_number(a)
            out.append(float(got is not None and want is not None and math.isclose(got, want, rel_tol=1e-6)))
        return out

    def json_(prompts: list[str], completions: list[str], answers: list[str | None]) -> list[float]:
        return [float(_parses(c)) for c in completions]

    def length(prompts: list[str], completions: list[str], answers: list[str | None]) -> list[float]:
        return [float(options.min_chars <= len(c.strip()) <= options.max_chars) for c in completions]

    return {"exact": exact, "contains": contains, "format": format_, "numeric": numeric, "json": json_,
            "length": length}  # fmt: skip


BUILTIN_NAMES = ("exact", "contains", "format", "numeric", "json", "length")
NEEDS_ANSWER = ("exact", "contains", "numeric")
BUILTIN_HELP = (
    "exact: the answer equals the row's 'answer' (spaces and case aside); contains: it contains the row's "
    "'answer'; format: it matches the format pattern; numeric: its last number equals the answer's; json: it "
    "parses as JSON; length: its length in characters is within the bounds"
)


def parse_names(text: str) -> list[str]:
    """'exact, format' or '[exact, format]' -> ['exact', 'format']."""
    return [n.strip().strip("'\"") for n in text.strip().strip("[]").split(",") if n.strip().strip("'\"")]


def parse_weights(text: str) -> list[float] | None:
    """'1, 0.5' or '[1.0, 0.5]' -> [1.0, 0.5]; None when empty. ValueError names what is not a number."""
    parts = [p.strip() for p in text.strip().strip("[]").split(",") if p.strip()]
    if not parts:
        return None
    out = []
    for p in parts:
        try:
            value = float(p)
        except ValueError:
            raise ValueError(f"'{p}' is not a number") from None
        if not math.isfinite(value):
            raise ValueError(f"'{p}' is not a finite number")
        out.append(value)
    return out


@dataclass
class Reward:
    name: str
    fn: RewardFn
    weight: float
    where: str  # FILE:LINE of its definition, or "built-in"


def _definition_line(fn: Callable[..., Any]) -> int:
    try:
        return inspect.getsourcelines(fn)[1]
    except (OSError, TypeError):
        return 0


def load_reward_file(path: str | Path) -> dict[str, tuple[RewardFn, int]]:
    """The file's own top-level functions of three parameters, by name, with their lines. UserError with
    FILE:LINE when the file cannot be read, does not parse, or fails while importing."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"{path}: the reward functions file does not exist; pick another or clear the setting")
    try:
        source = path.read_text(encoding="utf-8")
        ast.parse(source, str(path))
    except SyntaxError as e:
        raise UserError(f"{path}:{e.lineno}: the reward functions file does not parse: {e.msg}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: the reward functions file cannot be read ({e})") from None
    name = f"qlora_gui_rewards_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise UserError(f"{path}: not a Python file; give a .py file of reward functions")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        raise UserError(f"{_where(e, path)}: the reward functions file failed while loading: {_said(e)}") from None
    found: dict[str, tuple[RewardFn, int]] = {}
    for attr, value in vars(module).items():
        if attr.startswith("_") or not inspect.isfunction(value) or value.__module__ != name:
            continue
        params = [
            p
            for p in inspect.signature(value).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
        ]
        if len(params) == 3:
            found[attr] = (value, _definition_line(value))
    sys.modules.pop(name, None)
    return found


def _said(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__


def _where(e: BaseException, path: Path, fallback: int = 0) -> str:
    """FILE:LINE of the deepest frame of the traceback inside the file (the def line when none is)."""
    line = fallback
    for frame in traceback.extract_tb(e.__traceback__):
        if Path(frame.filename).resolve() == path.resolve() and frame.lineno:
            line = frame.lineno
    return f"{path}:{line}" if line else str(path)


def choose_rewards(names: str, weights: str, file: str, options: RewardOptions) -> list[Reward]:
    """The run's rewards: the named ones (built-ins and the file's), by default the file's functions, else
    "exact"; each with its weight (1 when no weights are given). UserError naming the fix otherwise."""
    builtins = builtin_rewards(options)
    own = load_reward_file(file) if file else {}
    chosen = parse_names(names) or (list(own) if own else ["exact"])
    if file and not own:
        raise UserError(
            f"{file}: no reward function found; define `def NAME(prompts, completions, answers):` returning one "
            "number per completion"
        )
    unknown = [n for n in chosen if n not in own and n not in builtins]
    if unknown:
        known = ", ".join([*BUILTIN_NAMES, *own])
        raise UserError(f"unknown reward function(s) {', '.join(unknown)}; choose among {known} (--reward-functions)")
    try:
        values = parse_weights(weights)
    except ValueError as e:
        raise UserError(f"--reward-weights: {e}; give one number per reward function, e.g. 1,0.5") from None
    if values is not None and len(values) != len(chosen):
        raise UserError(
            f"--reward-weights gives {len(values)} weight(s) for {len(chosen)} reward function(s) "
            f"({', '.join(chosen)}); give one per function"
        )
    out = []
    for i, n in enumerate(chosen):
        fn, where = (own[n][0], f"{file}:{own[n][1]}") if n in own else (builtins[n], "built-in")
        out.append(Reward(n, fn, values[i] if values is not None else 1.0, where))
    return out


class RewardSet:
    """The run's rewards together: each one's scores and their weighted sum, for one group at a time."""

    def __init__(self, rewards: list[Reward]):
        self.rewards = rewards
        self.names = [r.name for r in rewards]

    @property
    def description(self) -> str:
        return "rewards: " + ", ".join(f"{r.name} x{r.weight:g}" for r in self.rewards)

    def check(self, prompts: list[str], answers: list[str | None], lines: list[str]) -> None:
        """Each reward on the first rows (their reference answers standing in for completions), before any
        weights load. UserError with the function's FILE:LINE on an exception or a wrong result."""
        if not prompts:
            return
        for r in self.rewards:
            if r.name in NEEDS_ANSWER and r.where == "built-in":
                missing = [line for line, a in zip(lines, answers, strict=True) if a is None]
                if missing:
                    raise UserError(
                        f"{missing[0]}: the reward '{r.name}' compares with each row's 'answer', and this row has "
                        "none; add answers or choose rewards that need none (format, json, length, your own)"
                    )
            completions = [a if a is not None else "" for a in answers]
            try:
                got = list(r.fn(list(prompts), completions, list(answers)))
            except Exception as e:
                file = Path(r.where.rsplit(":", 1)[0]) if r.where != "built-in" else None
                where = _where(e, file, int(r.where.rsplit(":", 1)[1])) if file else r.where
                raise UserError(f"{where}: reward function '{r.name}' failed on the first rows: {_said(e)}") from None
            problem = result_problem(got, len(prompts))
            if problem:
                raise UserError(f"{r.where}: reward function '{r.name}' {problem}")

    def score(
        self, prompts: list[str], completions: list[str], answers: list[str | None]
    ) -> tuple[list[float], dict[str, list[float]], list[str]]:
        """Each completion's weighted total, each reward's own scores, and a warning for each reward that
        failed (it counts 0 for these completions)."""
        n = len(completions)
        each: dict[str, list[float]] = {}
        warnings = []
        for r in self.rewards:
            try:
                got = [float(x) for x in r.fn(list(prompts), list(completions), list(answers))]
                problem = result_problem(got, n)
            except Exception as e:
                got, problem = [], f"failed ({_said(e)})"
            if problem:
                warnings.append(f"reward function '{r.name}' ({r.where}) {problem}; it counts 0 for this group")
                got = [0.0] * n
            each[r.name] = got
        totals = [sum(r.weight * each[r.name][i] for r in self.rewards) for i in range(n)]
        return totals, each, warnings


def result_problem(got: Sequence[Any], n: int) -> str:
    """Why a reward's result is unusable; "" when it is one finite number per completion."""
    if len(got) != n:
        return f"returned {len(got)} value(s) for {n} completion(s); return one number per completion"
    for x in got:
        if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(float(x)):
            return f"returned {x!r}; return finite numbers"
    return ""
