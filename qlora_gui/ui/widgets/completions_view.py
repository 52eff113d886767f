"""GRPO's answers by step: the G answers the model wrote to one prompt, each with its rewards and advantage;
the best and the worst marked. A slider goes back through the steps."""

from __future__ import annotations

from collections.abc import Iterable

from PySide6.QtCore import Qt
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QLabel,
    QSlider,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ...core.events import Event, GroupCompletions

BEST_COLOUR = QColor(80, 180, 110, 90)  # light enough for dark mode too
WORST_COLOUR = QColor(220, 90, 80, 80)
EMPTY_TEXT = (
    "No answers yet. At each report a GRPO run shows here the answers it sampled for one prompt, with the "
    "reward each earned and its advantage over the group."
)
FIXED_COLUMNS = ("Reward", "Advantage", "Tokens")


class CompletionsView(QWidget):
    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.groups: list[GroupCompletions] = []
        self.title = QLabel(EMPTY_TEXT)
        self.title.setWordWrap(True)
        self.title.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setEnabled(False)
        self.slider.valueChanged.connect(self._show)
        self.step_label = QLabel("")
        self.table = QTableWidget(0, 0)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setWordWrap(True)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setStretchLastSection(True)  # the answer takes the rest of the width
        top = QHBoxLayout()
        top.addWidget(QLabel("Step"))
        top.addWidget(self.slider, 1)
        top.addWidget(self.step_label)
        layout = QVBoxLayout(self)
        layout.addWidget(self.title)
        layout.addLayout(top)
        layout.addWidget(self.table, 1)

    def clear(self) -> None:
        self.groups = []
        self.slider.setEnabled(False)
        self.title.setText(EMPTY_TEXT)
        self.step_label.setText("")
        self.table.setRowCount(0)

    def add(self, e: GroupCompletions) -> None:
        """The answers of a report; shown at once when the newest step was on show."""
        at_newest = not self.groups or self.slider.value() == len(self.groups) - 1
        while self.groups and self.groups[-1].step >= e.step:  # a run that went back: drop what it undid
            self.groups.pop()
        self.groups.append(e)
        self.slider.blockSignals(True)
        self.slider.setRange(0, len(self.groups) - 1)
        self.slider.setEnabled(len(self.groups) > 1)
        if at_newest:
            self.slider.setValue(len(self.groups) - 1)
        self.slider.blockSignals(False)
        self._show(self.slider.value())

    def set_events(self, events: Iterable[Event]) -> None:
        """A run's answers so far, from its metrics.jsonl (a resumed run's history, a past run)."""
        self.clear()
        for e in events:
            if isinstance(e, GroupCompletions) and isinstance(e.completions, list):
                self.add(e)

    def best_and_worst(self) -> tuple[int, int] | None:
        """Rows of the best and the worst answer on show; None when they all scored the same."""
        if not self.groups:
            return None
        rewards = [float(c.get("reward", 0.0)) for c in self.groups[self.slider.value()].completions]
        if not rewards or max(rewards) == min(rewards):
            return None
        return rewards.index(max(rewards)), rewards.index(min(rewards))

    def _show(self, index: int) -> None:
        if not 0 <= index < len(self.groups):
            return
        g = self.groups[index]
        reference = f" · reference: {g.reference}" if g.reference else ""
        self.title.setText(f"{g.prompt}{reference}" + (f"  ({g.source})" if g.source else ""))
        self.step_label.setText(f"{g.step}")
        functions = list(dict.fromkeys(k for c in g.completions for k in (c.get("rewards") or {})))
        headers = [*FIXED_COLUMNS, *(functions if len(functions) > 1 else []), "Answer"]
        self.table.setColumnCount(len(headers))
        self.table.setHorizontalHeaderLabels(headers)
        self.table.setRowCount(len(g.completions))
        marks = self.best_and_worst()
        for row, c in enumerate(g.completions):
            cells = [f"{c.get('reward', 0.0):.3f}", f"{c.get('advantage', 0.0):+.2f}", str(c.get("tokens", ""))]
            if len(functions) > 1:
                cells += [f"{(c.get('rewards') or {}).get(f, 0.0):.2f}" for f in functions]
            cells.append(str(c.get("text", "")))
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if marks is not None and row in marks:
                    item.setBackground(QBrush(BEST_COLOUR if row == marks[0] else WORST_COLOUR))
                    item.setToolTip("the best answer of the group" if row == marks[0] else "the worst answer")
                self.table.setItem(row, col, item)
        for col in range(len(headers) - 1):
            self.table.resizeColumnToContents(col)
