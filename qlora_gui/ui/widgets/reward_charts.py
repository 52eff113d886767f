"""How a GRPO run's sampled answers score, live: the mean reward (and each reward function's), the spread of the
rewards within a group with the share of groups whose answers all scored alike, the KL divergence to the base,
and the answers' length; lines for training, dots for the held-out prompts."""

from __future__ import annotations

from collections.abc import Iterable

import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QVBoxLayout, QWidget

from ...core.events import Event, RewardReport
from ..theme import color_legend, style_plot
from .charts import ChartStack, dot_legend, show_lone_points

COLORS = {"train": "#1f5fbf", "valid": "#e4572e", "spread": "#2a9d8f", "flat": "#8e6c8a", "kl": "#b5651d"}
FUNCTION_COLORS = ("#6a994e", "#bc4749", "#f2a541", "#577590", "#9c89b8", "#43aa8b")
SERIES = ("reward_mean", "reward_spread", "zero_spread_share", "completion_length")


class RewardCharts(QWidget):
    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.view = pg.GraphicsLayoutWidget()
        self.stack = ChartStack(
            self.view, "The reward charts start at the base's held-out rewards (step 0) or the first training report."
        )
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.stack)
        self.legend = pg.LegendItem(colCount=3)
        self.view.addItem(self.legend, row=0, col=0, colspan=2)
        # Two by two: each chart keeps half the column's height however far the answers pane is pulled up.
        self.reward_plot = self._plot("Mean reward", 1, 0)
        self.spread_plot = self._plot("Spread in groups", 1, 1)
        self.kl_plot = self._plot("KL to the base", 2, 0)
        self.length_plot = self._plot("Answer tokens", 2, 1)
        pen = pg.mkPen
        dots = dict(pen=None, symbol="o", symbolSize=7, symbolPen=None)
        self.curves = {
            ("train", "reward_mean"): self.reward_plot.plot(pen=pen(COLORS["train"], width=2)),
            ("valid", "reward_mean"): self.reward_plot.plot(symbolBrush=COLORS["valid"], **dots),
            ("train", "reward_spread"): self.spread_plot.plot(pen=pen(COLORS["spread"], width=1)),
            ("train", "zero_spread_share"): self.spread_plot.plot(pen=pen(COLORS["flat"], style=Qt.PenStyle.DashLine)),
            ("train", "kl"): self.kl_plot.plot(pen=pen(COLORS["kl"], width=1)),
            ("train", "completion_length"): self.length_plot.plot(pen=pen(COLORS["train"], width=1)),
            ("valid", "completion_length"): self.length_plot.plot(symbolBrush=COLORS["valid"], **dots),
        }
        dot_legend(self.curves[("valid", "reward_mean")], COLORS["valid"])
        dot_legend(self.curves[("valid", "completion_length")], COLORS["valid"])
        for key, name in (
            (("train", "reward_mean"), "train"),
            (("valid", "reward_mean"), "held out"),
            (("train", "reward_spread"), "spread"),
            (("train", "zero_spread_share"), "groups all alike"),
        ):
            self.legend.addItem(self.curves[key], name)
        self.function_curves: dict[str, pg.PlotDataItem] = {}
        self.clear()

    def _plot(self, title: str, row: int, col: int) -> pg.PlotItem:
        plot = self.view.addPlot(row=row, col=col, title=title)
        plot.showGrid(x=True, y=True, alpha=0.2)
        plot.setLabel("bottom", "step")
        plot.setMenuEnabled(False)
        for axis in ("bottom", "left"):
            plot.getAxis(axis).enableAutoSIPrefix(False)
        return plot

    @property
    def plots(self) -> tuple[pg.PlotItem, ...]:
        return self.reward_plot, self.spread_plot, self.kl_plot, self.length_plot

    def clear(self) -> None:
        for name, curve in self.function_curves.items():
            self.reward_plot.removeItem(curve)
            self.legend.removeItem(name)
        self.function_curves = {}
        self.points: dict[tuple[str, str], tuple[list[int], list[float]]] = {}
        for curve in self.curves.values():
            curve.setData([], [])
        self.stack.show_charts(False)

    def set_total_steps(self, total: int) -> None:
        for plot in self.plots:
            plot.setXRange(0, max(total, 1), padding=0.02)

    def _curve(self, split: str, name: str) -> pg.PlotDataItem | None:
        """A series' curve; a reward function's own line is made when it first reports."""
        if not name.startswith("fn:"):
            return self.curves.get((split, name))
        function = name[3:]
        if function not in self.function_curves:
            color = FUNCTION_COLORS[len(self.function_curves) % len(FUNCTION_COLORS)]
            curve = self.reward_plot.plot(pen=pg.mkPen(color, width=1, style=Qt.PenStyle.DotLine))
            self.function_curves[function] = curve
            self.legend.addItem(curve, function)
        return self.function_curves[function]

    def add(self, e: RewardReport) -> None:
        """A report on training steps (lines) or on held-out prompts (dots); the test split's is not plotted."""
        split = "valid" if e.split == "valid" else "train" if e.split == "train" else None
        if split is None:
            return
        values: dict[str, float | None] = {name: getattr(e, name) for name in SERIES}
        values["kl"] = e.kl
        if split == "train" and len(e.functions) > 1:  # one function's line would only repeat the mean
            values.update({f"fn:{name}": v for name, v in e.functions.items()})
        for name, value in values.items():
            curve = self._curve(split, name)
            if curve is None or value is None:
                continue
            steps, ys = self.points.setdefault((split, name), ([], []))
            if steps and steps[-1] >= e.step:  # a run that went back after a divergence: drop what it undid
                keep = sum(s < e.step for s in steps)
                del steps[keep:], ys[keep:]
            steps.append(e.step)
            ys.append(value)
            if split == "train":
                show_lone_points(curve, len(steps))
            curve.setData(steps, ys)
        self.stack.show_charts(True)

    def set_events(self, events: Iterable[Event]) -> None:
        """A run's reward figures so far, from its metrics.jsonl (a resumed run's history, a past run)."""
        self.clear()
        for e in events:
            if isinstance(e, RewardReport) and all(isinstance(getattr(e, k), (int, float)) for k in SERIES):
                self.add(e)

    def apply_palette(self, palette: QPalette) -> None:
        style_plot(self.view, self.plots, palette)
        color_legend(self.legend, palette.color(QPalette.ColorRole.Text))
