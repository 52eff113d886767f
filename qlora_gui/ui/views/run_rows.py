"""The Runs table's rows: what each column shows of a run's summary, and how the column sorts."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QTreeWidgetItem

from ...core.runs.run_admin import describe_settings
from ...core.runs.run_summary import RunSummary

PATH_ROLE = Qt.ItemDataRole.UserRole
# Each column's name and what it says (its header's tooltip).
COLUMNS = [
    ("Run", "The run folder's name"),
    ("Date", "When the run last wrote to its folder"),  # beside the name: the newest-first arrow is in sight
    ("Status", "finished, stopped (resumable), failed or incomplete"),
    ("Notes", "Your notes on the run (Notes…); all of them show below the table"),  # in sight at 1280 px
    (
        "Mode",
        "What the run trains: SFT (next-token loss on the answers), DPO or ORPO (preference pairs), GRPO "
        "(rewards on its own answers; its validation figure is the negated held-out mean reward)",
    ),
    ("Model", "The base model"),
    ("Data", "The dataset"),
    ("Steps", "The last step the run reached"),
    (
        "Final val loss",
        "The last validation loss of what the run trains on: the next-token loss (SFT), or the DPO or ORPO "
        "loss of the pairs, which does not compare with a next-token loss",
    ),
    ("Best val loss", "The lowest validation loss of the run, in the same terms as the final one"),
    ("Last train loss", "The last reported training loss, in the mode's own terms"),
    (
        "Eval: answer loss (base → adapter)",
        "From Evaluate: the next-token loss of the answers (the chosen answers of pairs) under the base and "
        "under the adapter, for every mode; not the DPO or ORPO loss",
    ),
    ("Settings", "The settings that matter most; hover a cell for all of them"),
]
COLUMN_INDEX = {name: i for i, (name, _) in enumerate(COLUMNS)}
WIDEST_COLUMN = 300  # px: wider text is elided, shown whole in its tooltip
MODE_NAMES = {"sft": "SFT", "dpo": "DPO", "orpo": "ORPO", "grpo": "GRPO"}
MISSING = float("inf")  # a run without the figure sorts after those with one (ascending)


def fmt_loss(x: float | None) -> str:
    return f"{x:.4f}" if x is not None else "–"


def eval_cell(results: list[dict]) -> str:
    if not results:
        return "–"
    r = results[-1]
    if r.get("adapter_reward") is not None:
        base_reward = r.get("base_reward")
        shown = f"{base_reward:.3f} → " if base_reward is not None else ""
        return f"reward {shown}{r['adapter_reward']:.3f}"
    base, adapter = r.get("base_loss"), r.get("adapter_loss")
    return f"{fmt_loss(base)} → {fmt_loss(adapter)}" if base is not None else fmt_loss(adapter)


def run_row(run: RunSummary) -> list[tuple[str, Any]]:
    """(text, sort key) of each column, from the summary alone: no file is read."""
    c = run.config
    notes = " ".join(run.notes.split())
    mode = str(c.get("train_mode") or "sft")
    evaluation = run.last_evaluation
    adapter_loss = evaluation.get("adapter_loss") if evaluation else None
    data = Path(str(c.get("data", ""))).name
    cells = {
        "Run": (run.name, run.name.lower()),
        "Date": (time.strftime("%Y-%m-%d %H:%M", time.localtime(run.modified)), run.modified),
        "Status": (run.status, run.status),
        "Mode": (MODE_NAMES.get(mode, mode), mode),
        "Model": (run.model_name, run.model_name.lower()),
        "Data": (data, data.lower()),
        "Steps": (str(run.last_step), run.last_step),
        "Final val loss": (_mode_loss(run.final_val_loss, mode), _number(run.final_val_loss)),
        "Best val loss": (_mode_loss(run.best_val_loss, mode), _number(run.best_val_loss)),
        "Last train loss": (_mode_loss(run.final_loss, mode), _number(run.final_loss)),
        "Eval: answer loss (base → adapter)": (eval_cell([evaluation] if evaluation else []), _number(adapter_loss)),
        "Settings": (describe_settings(c), describe_settings(c)),
        "Notes": (notes, notes.lower()),
    }
    return [cells[name] for name, _ in COLUMNS]


def _mode_loss(value: float | None, mode: str) -> str:
    """A loss, named when it is a preference loss (which does not compare with a next-token loss)."""
    return fmt_loss(value) + (f" ({MODE_NAMES.get(mode, mode)})" if value is not None and mode != "sft" else "")


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
