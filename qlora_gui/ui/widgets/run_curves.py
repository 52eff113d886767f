"""The Runs tab's loss curves: each selected run's train line and validation dots, in its own colour."""

from __future__ import annotations

from pathlib import Path

import pyqtgraph as pg
from PySide6.QtGui import QPalette

from ...core.runs.history import RunReadings
from ..theme import style_plot

PALETTE = ["#1f5fbf", "#e4572e", "#2a9d8f", "#8e6c8a", "#d4a017", "#7f7f7f"]
TITLE = "Loss curves of the selected runs (solid: train, dots: validation)"
MAX_DRAWN = 12  # more lines than this is no comparison (six colours), and selecting all runs stays quick


class RunCurvesPlot(pg.PlotWidget):
    def __init__(self) -> None:
        super().__init__(title=TITLE)
        self.addLegend(offset=(-10, 10))
        self.showGrid(x=True, y=True, alpha=0.2)
        self.setLabel("bottom", "step")
        self.setMenuEnabled(False)
        plot = self.getPlotItem()
        plot.setClipToView(True)
        plot.setDownsampling(auto=True, mode="peak")  # a long run's 20,000 reports drawn as the pixels they fill
        self.readings = RunReadings()
        self.plotted: list[str] = []  # the names of the runs shown
        self.without_curve: list[str] = []  # selected runs with no loss to draw (trained elsewhere, not started)

    def show_runs(self, runs: list[tuple[str, Path]]) -> None:
        """(name, run folder) of each run to draw; the first MAX_DRAWN of them."""
        plot = self.getPlotItem()
        plot.disableAutoRange()  # fitted once at the end, not again for each line added (that grows as n²)
        self.clear()
        self.plotted, self.without_curve = [], []
        shown = runs[:MAX_DRAWN]
        title = TITLE if len(runs) <= MAX_DRAWN else f"{TITLE}: the first {MAX_DRAWN} of {len(runs)}"
        for n, (name, run_dir) in enumerate(shown):
            curves = self.readings.curves(run_dir)
            if not curves.steps and not curves.val_steps:  # a line in the legend with nothing drawn says nothing
                self.without_curve.append(name)
                continue
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
        if self.without_curve:
            names = ", ".join(self.without_curve)
            title += f"<br>no losses recorded for {names} (trained elsewhere, or stopped before its first report)"
        self.setTitle(title)
        plot.enableAutoRange()

    def lines(self) -> list[tuple[list[float], list[float]]]:
        """Each drawn line's steps and values, as given (before the view clips and downsamples them)."""
        return [(list(item.xData), list(item.yData)) for item in self.getPlotItem().listDataItems()]

    def apply_palette(self, palette: QPalette) -> None:
        style_plot(self, (self.getPlotItem(),), palette)
