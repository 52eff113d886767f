"""How a DPO or ORPO run's pairs fare, live: the share the chosen answer wins, the reward margin, and the
log-probabilities of the chosen and rejected answers; lines for training, dots for validation."""

from __future__ import annotations

import math

import pyqtgraph as pg
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QVBoxLayout, QWidget

from ...core.events import Event, PreferenceReport
from ..theme import color_legend, style_plot
from .charts import ChartStack, dot_legend, show_lone_points

COLORS = {"train": "#1f5fbf", "valid": "#e4572e", "chosen": "#2a9d8f", "rejected": "#8e6c8a"}
SERIES = ("reward_accuracy", "reward_margin", "chosen_logp", "rejected_logp")


class PreferenceCharts(QWidget):
    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.view = pg.GraphicsLayoutWidget()
        self.stack = ChartStack(
            self.view, "The pair charts start at the base's validation (step 0) or the first training report."
        )
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.stack)
        self.legend = pg.LegendItem(colCount=4)
        self.view.addItem(self.legend, row=0, col=0)
        self.wins_plot = self._plot("Chosen answer wins (share of pairs)", 1)
        self.wins_plot.setYRange(0, 1, padding=0.05)
        self.margin_plot = self._plot("Reward margin (chosen − rejected)", 2)
        self.logp_plot = self._plot("Log-probability of the answers", 3)
        pen = pg.mkPen
        dots = dict(pen=None, symbol="o", symbolSize=7, symbolPen=None)
        self.curves = {
            ("train", "reward_accuracy"): self.wins_plot.plot(pen=pen(COLORS["train"], width=1)),
            ("valid", "reward_accuracy"): self.wins_plot.plot(symbolBrush=COLORS["valid"], **dots),
            ("train", "reward_margin"): self.margin_plot.plot(pen=pen(COLORS["train"], width=1)),
            ("valid", "reward_margin"): self.margin_plot.plot(symbolBrush=COLORS["valid"], **dots),
            ("train", "chosen_logp"): self.logp_plot.plot(pen=pen(COLORS["chosen"], width=1)),
            ("train", "rejected_logp"): self.logp_plot.plot(pen=pen(COLORS["rejected"], width=1)),
            ("valid", "chosen_logp"): self.logp_plot.plot(symbolBrush=COLORS["chosen"], **dots),
            ("valid", "rejected_logp"): self.logp_plot.plot(symbolBrush=COLORS["rejected"], **dots),
        }
        for (split, name), curve in self.curves.items():
            if split == "valid":
                dot_legend(curve, COLORS["chosen" if name == "chosen_logp" else "rejected" if "rejected" in name
                                         else "valid"])  # fmt: skip
        for key, name in (
            (("train", "reward_accuracy"), "train"),
            (("valid", "reward_accuracy"), "validation"),
            (("train", "chosen_logp"), "chosen"),
            (("train", "rejected_logp"), "rejected"),
        ):
            self.legend.addItem(self.curves[key], name)
        self.clear()

    def _plot(self, title: str, row: int) -> pg.PlotItem:
        plot = self.view.addPlot(row=row, col=0, title=title)
        plot.showGrid(x=True, y=True, alpha=0.2)
        plot.setLabel("bottom", "step")
        plot.setMenuEnabled(False)
        for axis in ("bottom", "left"):
            plot.getAxis(axis).enableAutoSIPrefix(False)
        return plot

    @property
    def plots(self) -> tuple[pg.PlotItem, ...]:
        return self.wins_plot, self.margin_plot, self.logp_plot

    def clear(self) -> None:
        self.points: dict[tuple[str, str], tuple[list[int], list[float]]] = {key: ([], []) for key in self.curves}
        for curve in self.curves.values():
            curve.setData([], [])
        self.stack.show_charts(False)

    def set_total_steps(self, total: int) -> None:
        for plot in self.plots:
            plot.setXRange(0, max(total, 1), padding=0.02)

    def add(self, e: PreferenceReport) -> None:
        """A report on training steps (a line) or a validation (dots); the test split's is not plotted."""
        split = "valid" if e.split == "valid" else "train" if e.split == "train" else None
        if split is None:
            return
        for name in SERIES:
            steps, values = self.points[(split, name)]
            if steps and steps[-1] >= e.step:  # a run that went back after a divergence: drop what it undid
                keep = sum(s < e.step for s in steps)
                del steps[keep:], values[keep:]
            steps.append(e.step)
            values.append(getattr(e, name))
            if split == "train":
                show_lone_points(self.curves[(split, name)], len(steps))
            self.curves[(split, name)].setData(steps, values)
        self.stack.show_charts(True)

    def keep_up_to(self, step: int) -> None:
        """Training goes on from `step` (a resume from its checkpoint): the figures of later steps leave."""
        for key, (steps, values) in self.points.items():
            keep = sum(s <= step for s in steps)
            del steps[keep:], values[keep:]
            if key[0] == "train":
                show_lone_points(self.curves[key], len(steps))
            self.curves[key].setData(steps, values)

    def set_events(self, events: list[Event]) -> None:
        """A run's pair figures so far, from its metrics.jsonl (a resumed run's history); a report with a figure
        that was not finite (stored as null) is left out."""
        self.clear()
        for e in events:
            if isinstance(e, PreferenceReport) and all(math.isfinite(getattr(e, k)) for k in SERIES):
                self.add(e)

    def apply_palette(self, palette: QPalette) -> None:
        style_plot(self.view, self.plots, palette)
        color_legend(self.legend, palette.color(QPalette.ColorRole.Text))
