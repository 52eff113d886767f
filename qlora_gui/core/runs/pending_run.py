"""The run being prepared: one TrainConfig that the app's tabs edit, each its own part, and observe.

The Settings tab gives the settings (or says why one is refused), the Model tab the model and how it is
quantized, the Data tab the data, its held-out share and completions-only; each tab reads what the others set
from here (the Data tab checks the rows with the settings' max_seq_length, batch size and seed), and the
window starts the run from `config_to_start()`. Qt-free: a listener is a plain function, told which settings
changed.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..config import TrainConfig
from .run_plan import new_run_folder

MODEL_KEYS = frozenset({"model", "quantize_bits", "quantize_group_size"})  # the Model tab's part
DATA_KEYS = frozenset({"data", "mask_prompt", "valid_fraction"})  # the Data tab's part
PROBLEM = "problem"  # told to listeners when the settings' problem changes (it is no setting)

Listener = Callable[[set[str]], None]


class PendingRun:
    def __init__(self, runs_root: Path | None = None) -> None:
        self.runs_root = Path(runs_root) if runs_root is not None else None
        self.config = TrainConfig()  # the settings as last accepted, with the model's and the data's parts
        self.problem = ""  # why the Settings tab's values are refused, in its words ("" when they are not)
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def _changed(self, keys: set[str]) -> None:
        if keys:
            for listener in list(self._listeners):
                listener(keys)

    def _set(self, values: dict[str, Any]) -> set[str]:
        changed = set()
        for key, value in values.items():
            if getattr(self.config, key) != value:
                setattr(self.config, key, copy.deepcopy(value))
                changed.add(key)
        return changed

    def update(self, **values: Any) -> None:
        """Some settings as a tab edits them (the Model tab's or the Data tab's); listeners hear of those that
        changed."""
        unknown = set(values) - {f.name for f in dataclasses.fields(TrainConfig)}
        if unknown:
            raise KeyError(f"not a setting: {', '.join(sorted(unknown))}")
        self._changed(self._set(values))

    def set_settings(self, settings: TrainConfig | None, problem: str = "") -> None:
        """The Settings tab's values, every setting but the model's and the data's parts; None (with the
        problem, in the tab's words) while one of them is refused: the last accepted ones are kept meanwhile."""
        changed = set()
        if settings is not None:
            own = MODEL_KEYS | DATA_KEYS
            values = {f.name: getattr(settings, f.name) for f in dataclasses.fields(TrainConfig)}
            changed = self._set({k: v for k, v in values.items() if k not in own})
        problem = "" if settings is not None else problem or "refused"
        if problem != self.problem:
            self.problem = problem
            changed.add(PROBLEM)
        self._changed(changed)

    def config_to_start(self) -> TrainConfig | None:
        """The whole config, with a fresh run folder; None while the settings are refused."""
        if self.problem:
            return None
        cfg = copy.deepcopy(self.config)
        if self.runs_root is not None:
            cfg.adapter_path = str(new_run_folder(self.runs_root, cfg.model))
        return cfg
