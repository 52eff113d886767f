"""The Runs table's rows: what each column shows of a run's summary, and how the column sorts."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QTreeWidgetItem

from ...core.runs.run_admin import describe_settings
from ...core.runs.run_summary import RunSummary
from .run_figures import eval_cell, fmt_loss

PATH_ROLE = Qt.ItemDataRole.UserRole
COLUMNS = [
    "Run",
    "Status",
    "Model",
    "Data",
    "Steps",
    "Final val loss",
    "Best val loss",
    "Eval loss (base → adapter)",
    "Settings",
    "Notes",
    "Last train loss",
    "Date",
]
MISSING = float("inf")  # a run without the figure sorts after those with one (ascending)


def run_row(run: RunSummary) -> list[tuple[str, Any]]:
    """(text, sort key) of each column, from the summary alone: no file is read."""
    c = run.config
    notes = run.notes.strip()
    evaluation = run.last_evaluation
    adapter_loss = evaluation.get("adapter_loss") if evaluation else None
    return [
        (run.name, run.name.lower()),
        (run.status, run.status),
        (run.model_name, run.model_name.lower()),
        (Path(str(c.get("data", ""))).name, Path(str(c.get("data", ""))).name.lower()),
        (str(run.last_step), run.last_step),
        (fmt_loss(run.final_val_loss), _number(run.final_val_loss)),
        (fmt_loss(run.best_val_loss), _number(run.best_val_loss)),
        (eval_cell([evaluation] if evaluation else []), _number(adapter_loss)),
        (describe_settings(c), describe_settings(c)),
        (notes.splitlines()[0][:60] if notes else "", notes.lower()),
        (fmt_loss(run.final_loss), _number(run.final_loss)),
        (time.strftime("%Y-%m-%d %H:%M", time.localtime(run.modified)), run.modified),
    ]


def _number(x: float | None) -> float:
    return MISSING if x is None else float(x)


class RunItem(QTreeWidgetItem):
    """A row whose columns sort by their keys: 20 steps before 100, missing losses last."""

    def __init__(self, row: list[tuple[str, Any]]):
        super().__init__([text for text, _ in row])
        self._keys = [key for _, key in row]

    def sort_key(self, column: int) -> Any:
        return self._keys[column]

    def __lt__(self, other: QTreeWidgetItem) -> bool:
        column = self.treeWidget().sortColumn() if self.treeWidget() else 0
        if isinstance(other, RunItem):
            mine, theirs = self._keys[column], other._keys[column]
            if type(mine) is type(theirs):
                return mine < theirs
        return self.text(column) < other.text(column)
