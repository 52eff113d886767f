"""Live training charts. Events only append to buffers; a timer redraws at 5 Hz,
so a fast run never floods the GUI thread with repaints."""

from __future__ import annotations

import math

import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QVBoxLayout, QWidget

from .theme import style_plot

REDRAW_MS = 200
SMOOTHING = 0.3  # exponential moving average weight of the newest report

COLORS = {"loss": "#7aa6da", "smooth": "#1f5fbf", "val": "#e4572e", "lr": "#2a9d8f", "tps": "#8e6c8a",
          "active": "#2a9d8f", "peak": "#e4572e", "rss": "#7f7f7f", "limit": "#c00000"}


def ema(values: list[float], weight: float = SMOOTHING) -> list[float]:
    out, acc = [], None
    for v in values:
        acc = v if acc is None else weight * v + (1 - weight) * acc
        out.append(acc)
    return out


class TrainingCharts(QWidget):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.view = pg.GraphicsLayoutWidget()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.view)
        self.loss_plot = self._plot("Loss", "loss", 0, 0)
        self.lr_plot = self._plot("Learning rate", "lr", 0, 1)
        self.tps_plot = self._plot("Trained tokens / s", "tokens/s", 1, 0)
        self.mem_plot = self._plot("Memory (GB, log scale)", "GB", 1, 1)
        # Log scale: a small run's few hundred MB stay readable next to a limit of tens of GB.
        self.mem_plot.setLogMode(y=True)
        self.loss_plot.addLegend(offset=(-10, 10))
        self.mem_plot.addLegend(offset=(-10, 10))
        pen = pg.mkPen
        self.loss_raw = self.loss_plot.plot(pen=pen(COLORS["loss"], width=1), name="train")
        self.loss_smooth = self.loss_plot.plot(pen=pen(COLORS["smooth"], width=2.5), name="train (smoothed)")
        self.val_points = self.loss_plot.plot(pen=None, symbol="o", symbolSize=8, symbolBrush=COLORS["val"],
                                              symbolPen=None, name="validation")
        self.lr_curve = self.lr_plot.plot(pen=pen(COLORS["lr"], width=2))
        self.tps_curve = self.tps_plot.plot(pen=pen(COLORS["tps"], width=2))
        self.mem_active = self.mem_plot.plot(pen=pen(COLORS["active"], width=2), name="MLX active")
        self.mem_peak = self.mem_plot.plot(pen=pen(COLORS["peak"], width=2), name="MLX peak")
        self.mem_rss = self.mem_plot.plot(pen=pen(COLORS["rss"], width=2), name="process RSS")
        self.limit_line = pg.InfiniteLine(angle=0, movable=False,
                                          pen=pen(COLORS["limit"], width=1.5, style=Qt.PenStyle.DashLine),
                                          label="limit", labelOpts={"position": 0.12, "color": COLORS["limit"]})
        self.mem_plot.addItem(self.limit_line)
        self.limit_line.hide()
        self.clear()
        self._timer = QTimer(self)
        self._timer.setInterval(REDRAW_MS)
        self._timer.timeout.connect(self.redraw)
        self._timer.start()

    def _plot(self, title: str, unit: str, row: int, col: int):
        plot = self.view.addPlot(row=row, col=col, title=title)
        plot.showGrid(x=True, y=True, alpha=0.2)
        plot.setLabel("bottom", "step")
        plot.setMenuEnabled(False)
        return plot

    def clear(self) -> None:
        self.steps: list[int] = []
        self.losses: list[float] = []
        self.lrs: list[float] = []
        self.tps: list[float] = []
        self.active: list[float] = []
        self.peak: list[float] = []
        self.rss: list[float] = []
        self.val_steps: list[int] = []
        self.val_losses: list[float] = []
        self._dirty = True

    def add_progress(self, d: dict) -> None:
        if d.get("loss") is None:
            return
        self.steps.append(d["step"])
        self.losses.append(d["loss"])
        self.lrs.append(d["learning_rate"])
        self.tps.append(d["tokens_per_sec"])
        self.active.append(d["mlx_active_gb"])
        self.peak.append(d["mlx_peak_gb"])
        self.rss.append(d["rss_gb"])
        self._dirty = True

    def add_validation(self, d: dict) -> None:
        if d.get("split", "valid") == "valid" and d.get("val_loss") is not None:
            self.val_steps.append(d["step"])
            self.val_losses.append(d["val_loss"])
            self._dirty = True

    def set_memory_limit(self, gb: float | None) -> None:
        if gb:
            self.limit_line.setValue(math.log10(gb))  # the axis is log10 of GB
            self.limit_line.label.setFormat(f"limit {gb:.1f} GB")
            self.limit_line.label.valueChanged()  # redraw the text now, not on the next move
            self.limit_line.show()
        else:
            self.limit_line.hide()

    def redraw(self) -> None:
        if not self._dirty:
            return
        self._dirty = False
        self.loss_raw.setData(self.steps, self.losses)
        self.loss_smooth.setData(self.steps, ema(self.losses))
        self.val_points.setData(self.val_steps, self.val_losses)
        self.lr_curve.setData(self.steps, self.lrs)
        self.tps_curve.setData(self.steps, self.tps)
        self.mem_active.setData(self.steps, self.active)
        self.mem_peak.setData(self.steps, self.peak)
        self.mem_rss.setData(self.steps, self.rss)

    def apply_palette(self, palette: QPalette) -> None:
        style_plot(self.view, (self.loss_plot, self.lr_plot, self.tps_plot, self.mem_plot), palette)
