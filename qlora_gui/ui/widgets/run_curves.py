"""The Runs tab's loss curves: each selected run's train line and validation dots, in its own colour."""

from __future__ import annotations

from pathlib import Path

import pyqtgraph as pg
from PySide6.QtGui import QPalette

from ...core.runs.history import read_curves
from ..theme import style_plot

PALETTE = ["#1f5fbf", "#e4572e", "#2a9d8f", "#8e6c8a", "#d4a017", "#7f7f7f"]


class RunCurvesPlot(pg.PlotWidget):
    def __init__(self) -> None:
        super().__init__(title="Loss curves of the selected runs (solid: train, dots: validation)")
        self.addLegend(offset=(-10, 10))
        self.showGrid(x=True, y=True, alpha=0.2)
        self.setLabel("bottom", "step")
        self.setMenuEnabled(False)
        self.plotted: list[str] = []  # the names of the runs shown

    def show_runs(self, runs: list[tuple[str, Path]]) -> None:
        """(name, run folder) of each run to draw."""
        self.clear()
        self.plotted = []
        for n, (name, run_dir) in enumerate(runs):
            curves = read_curves(run_dir)
            color = PALETTE[n % len(PALETTE)]
            self.plot(curves.steps, curves.losses, pen=pg.mkPen(color, width=2), name=name)
            if curves.val_steps:
                self.plot(
                    curves.val_steps,
                    curves.val_losses,
                    pen=None,
                    symbol="o",
                    symbolSize=7,
                    symbolBrush=color,
                    symbolPen=None,
                )
            self.plotted.append(name)

    def apply_palette(self, palette: QPalette) -> None:
        style_plot(self, (self.getPlotItem(),), palette)
