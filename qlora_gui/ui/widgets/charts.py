"""Live training charts. Events only append to buffers; a timer redraws at 4 Hz while the charts are shown,
so a fast run never floods the GUI thread with repaints.

Painting is kept cheap because it shares the interpreter with training: thin pens (Qt's raster engine draws
1-2 px lines much faster than wider ones), axes and grids cached as pixmaps until their range changes, and
curves clipped to the view and downsampled to the pixels they cover. A repaint of four plots with 2,000
points takes about 10 ms here instead of 45 ms (bench/bench_gui.py measures the GUI thread while training).
A long run keeps a bounded history (chart_history.py): its last stretch report by report, older reports merged,
so the charts of a 20,000-step run weigh and redraw as those of a 4,000-step one (bench/soak.py).
"""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QGraphicsItem, QLabel, QStackedWidget, QVBoxLayout, QWidget

from ...core.events import Event, Recovered, RunStarted, StepReport, ValidationResult, finite_or_none
from ..theme import color_legend, style_plot
from .chart_history import MAX, MEAN, ChartHistory

REDRAW_MS = 250
AXIS_WIDTH = 56  # pixels: "0.00012" or "12345" fit
SMOOTHING = 0.3  # exponential moving average weight of the newest report

COLORS = {
    "loss": "#7aa6da",
    "smooth": "#1f5fbf",
    "val": "#e4572e",
    "lr": "#2a9d8f",
    "tps": "#8e6c8a",
    "active": "#2a9d8f",
    "peak": "#e4572e",
    "rss": "#7f7f7f",
    "limit": "#c00000",
}


def ema(values: list[float], weight: float = SMOOTHING) -> list[float]:
    """An exponential moving average, bias-corrected as TensorBoard's smoothing is: it starts at the data and
    weighs each report as the average's decay says, with no pull toward the first value (nor toward 0)."""
    out, acc, decay, kept = [], 0.0, 1 - weight, 1.0
    for v in values:
        acc = decay * acc + weight * v
        kept *= decay
        out.append(acc / (1 - kept))
    return out


def dots_drawn(curve: pg.PlotDataItem) -> int:
    """How many points of a line are drawn as dots (a lone report's, see show_lone_points)."""
    return len(curve.scatter.points())


def show_lone_points(curve: pg.PlotDataItem, count: int, size: int = 6) -> None:
    """A line with a single point draws nothing: give that point a dot until the line has two."""
    lone = count == 1
    if lone != (curve.opts["symbol"] is not None):
        pen = curve.opts["pen"]
        color = pg.mkPen(pen).color() if pen is not None else None
        curve.setSymbol("o" if lone else None)
        if lone:
            curve.setSymbolSize(size)
            curve.setSymbolBrush(color)
            curve.setSymbolPen(None)


def dot_legend(curve: pg.PlotDataItem, color: str) -> None:
    """The legend draws a dotted series' marker from its scatter's own brush: the dots' colour, not grey."""
    curve.scatter.setBrush(pg.mkBrush(color))
    curve.scatter.setPen(pg.mkPen(None))


def readable_span(plot: pg.PlotItem, values: list[float]) -> None:
    """Values that are (nearly) all the same, as one report or a DPO run's first steps (ln 2 before the policy
    moves from its reference) are: a span of a tenth of their size around them, so the axis has labels and a
    learning rate of 1e-3 does not sit on a line marked 0; otherwise the plot ranges itself over the data."""
    top = max((abs(v) for v in values), default=0.0)
    flat = bool(values) and max(values) - min(values) < top / 20
    if flat:
        middle = (max(values) + min(values)) / 2
        plot.setYRange(middle - top / 20, middle + top / 20, padding=0)
    elif not plot.getViewBox().autoRangeEnabled()[1]:
        plot.enableAutoRange(axis="y")


class ChartStack(QStackedWidget):
    """Charts, or until their first data a line saying when they start (never empty 0-1 axes)."""

    def __init__(self, charts: QWidget, waiting: str):
        super().__init__()
        self.waiting = QLabel(waiting)
        self.waiting.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.waiting.setWordWrap(True)
        self.addWidget(self.waiting)
        self.addWidget(charts)

    def show_charts(self, shown: bool) -> None:
        self.setCurrentIndex(1 if shown else 0)


class TrainingCharts(QWidget):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.view = pg.GraphicsLayoutWidget()
        self.stack = ChartStack(self.view, "The charts start with the first report of the training steps.")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.stack)
        # Legends get rows of their own above their plots, so they never cover the data.
        self.loss_legend, self.mem_legend = pg.LegendItem(colCount=3), pg.LegendItem(colCount=3)
        self.view.addItem(self.loss_legend, row=0, col=0)
        self.view.addItem(self.mem_legend, row=2, col=1)
        self.loss_plot = self._plot("Loss", 1, 0)
        self.lr_plot = self._plot("Learning rate", 1, 1)
        self.tps_plot = self._plot("Trained tokens / s", 3, 0)
        self.mem_plot = self._plot("Memory (GB)", 3, 1)
        pen = pg.mkPen
        self.loss_raw = self.loss_plot.plot(pen=pen(COLORS["loss"], width=1))
        self.loss_smooth = self.loss_plot.plot(pen=pen(COLORS["smooth"], width=2))
        self.val_points = self.loss_plot.plot(
            pen=None, symbol="o", symbolSize=8, symbolBrush=COLORS["val"], symbolPen=None
        )
        dot_legend(self.val_points, COLORS["val"])
        for item, name in ((self.loss_raw, "train"), (self.loss_smooth, "smoothed"), (self.val_points, "validation")):
            self.loss_legend.addItem(item, name)
        self.lr_curve = self.lr_plot.plot(pen=pen(COLORS["lr"], width=1))
        self.tps_curve = self.tps_plot.plot(pen=pen(COLORS["tps"], width=1))
        self.mem_active = self.mem_plot.plot(pen=pen(COLORS["active"], width=1))
        self.mem_peak = self.mem_plot.plot(pen=pen(COLORS["peak"], width=1))
        self.mem_rss = self.mem_plot.plot(pen=pen(COLORS["rss"], width=1))
        for item, name in ((self.mem_active, "MLX active"), (self.mem_peak, "MLX peak"), (self.mem_rss, "RSS")):
            self.mem_legend.addItem(item, name)
        self.limit_line = pg.InfiniteLine(
            angle=0,
            movable=False,
            pen=pen(COLORS["limit"], width=1.5, style=Qt.PenStyle.DashLine),
            label="limit",
            labelOpts={"position": 0.12, "color": COLORS["limit"]},
        )
        self.mem_plot.addItem(self.limit_line)
        self.limit_line.hide()
        self.limit_gb: float | None = None
        self._placed: tuple | None = None  # the memory plot's limit line, title and range as last set
        self._total_steps: int | None = None
        self._values_shown: bool | None = None  # the value axes' numbers: only once there is data to read
        self.clear()
        self._timer = QTimer(self)
        self._timer.setInterval(REDRAW_MS)
        self._timer.timeout.connect(self.redraw)
        self._timer.start()

    def _plot(self, title: str, row: int, col: int):
        plot = self.view.addPlot(row=row, col=col, title=title)
        plot.showGrid(x=True, y=True, alpha=0.2)
        plot.setLabel("bottom", "step")
        plot.setMenuEnabled(False)
        for axis in ("bottom", "left"):
            plot.getAxis(axis).enableAutoSIPrefix(False)  # no "(x0.001)" scaling of steps or losses
        plot.setClipToView(True)
        plot.setDownsampling(auto=True, mode="peak")  # keeps spikes visible
        for axis in ("bottom", "left"):
            plot.getAxis(axis).setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)
        # A fixed width: an axis that widens for longer tick labels re-lays out all four plots, and each
        # re-layout repaints every axis (twice while a run started, 0.2-0.3 s each on this machine).
        plot.getAxis("left").setWidth(AXIS_WIDTH)
        return plot

    def set_total_steps(self, total: int) -> None:
        """The step axis runs from 0 to the run's last step from the start (not -400..400 before data)."""
        if total == self._total_steps:
            return  # a new range re-renders every axis
        self._total_steps = total
        self._dirty = True
        for plot in (self.loss_plot, self.lr_plot, self.tps_plot, self.mem_plot):
            plot.setXRange(0, max(total, 1), padding=0.02)

    def clear(self) -> None:
        self.history = ChartHistory(
            {
                "step": MEAN,
                "loss": MEAN,
                "smooth": MEAN,
                "lr": MEAN,
                "tps": MEAN,
                "active": MEAN,
                "peak": MAX,  # a merged pair keeps its peak: memory spikes stay on the chart
                "rss": MAX,
            }
        )
        self._ema = (0.0, 1.0)  # ema()'s running sum and the share of it still missing, over every report
        self.val_steps: list[int] = []
        self.val_losses: list[float] = []
        for mark in getattr(self, "recovery_marks", []):
            self.loss_plot.removeItem(mark)
        self.recovery_marks: list[pg.InfiniteLine] = []
        self._dirty = True

    @property
    def steps(self) -> list[float]:
        """The steps of the points kept (every report's while the run is short)."""
        return self.history["step"]

    def point_count(self) -> int:
        """The points the charts hold: the train lines' and the validation dots'."""
        return len(self.history) + len(self.val_steps)

    def add_progress(self, e: StepReport) -> None:
        self._add_step(e.step, e.loss, e.learning_rate, e.tokens_per_sec, e.mlx_active_gb, e.mlx_peak_gb, e.rss_gb)

    def add_validation(self, e: ValidationResult) -> None:
        self._add_validation(e.step, e.val_loss, e.split)

    def add_recovery(self, e: Recovered) -> None:
        self._add_recovery(e.back_to, e.lr_scale)

    def keep_up_to(self, step: int) -> None:
        """Training goes on from `step` (a resume from its checkpoint): the steps reported after it leave."""
        self.history.keep_up_to(step)
        smooth = self.history["smooth"]
        self._ema = (smooth[-1], 0.0) if smooth else (0.0, 1.0)  # go on from the smoothed value kept
        kept = sum(1 for s in self.val_steps if s <= step)
        del self.val_steps[kept:], self.val_losses[kept:]
        self._dirty = True

    def _add_recovery(self, back_to: int, lr_scale: float) -> None:
        """Training went back to `back_to`: the abandoned steps leave the curves, a line marks the place."""
        self.keep_up_to(back_to)
        mark = pg.InfiniteLine(
            back_to,
            angle=90,
            movable=False,
            pen=pg.mkPen(COLORS["val"], width=1, style=Qt.PenStyle.DashLine),
            label=f"diverged: back to {back_to}, lr ×{lr_scale:g}",
            labelOpts={"position": 0.9, "color": COLORS["val"]},
        )
        self.loss_plot.addItem(mark)
        self.recovery_marks.append(mark)
        self._dirty = True

    def add_history(self, events: list[Event], up_to_step: int) -> None:
        """A resumed run's earlier reports (its metrics.jsonl), up to the checkpoint it continues from."""
        for e in events:
            if getattr(e, "step", 0) > up_to_step:
                continue
            # metrics.jsonl stores a loss that was not finite as null, read back as NaN: not drawn
            if isinstance(e, StepReport):
                loss = finite_or_none(e.loss)
                self._add_step(
                    e.step, loss, e.learning_rate, e.tokens_per_sec, e.mlx_active_gb, e.mlx_peak_gb, e.rss_gb
                )
            elif isinstance(e, ValidationResult):
                self._add_validation(e.step, finite_or_none(e.val_loss), e.split)
            elif isinstance(e, Recovered):
                self.add_recovery(e)
            elif isinstance(e, RunStarted):
                self.keep_up_to(e.start_step)  # an earlier attempt's steps after this resume's checkpoint

    def _add_step(
        self, step: int, loss: float | None, lr: float, tps: float, active: float, peak: float, rss: float
    ) -> None:
        if loss is None:  # a loss that was not finite, as metrics.jsonl stores it
            return
        acc, missing = self._ema  # ema() one report at a time: the bounded history merges old points
        acc, missing = (1 - SMOOTHING) * acc + SMOOTHING * loss, missing * (1 - SMOOTHING)
        self._ema = (acc, missing)
        self.history.append((step, loss, acc / (1 - missing), lr, tps, active, peak, rss))
        self._dirty = True

    def _add_validation(self, step: int, val_loss: float | None, split: str) -> None:
        if split == "valid" and val_loss is not None:
            self.val_steps.append(step)
            self.val_losses.append(val_loss)
            self._dirty = True

    def set_memory_limit(self, gb: float | None) -> None:
        self.limit_gb = gb
        if gb:
            self.limit_line.setValue(gb)
            self.limit_line.label.setFormat(f"limit {gb:.1f} GB")
            self.limit_line.label.valueChanged()  # redraw the text now, not on the next move
        self._dirty = True

    def _place_limit(self) -> None:
        """A linear axis from 0: the limit line shows when it is within reach of the data, else the title
        names it (a few hundred MB stay readable beside a limit of tens of GB)."""
        top = max(self.history["peak"] + self.history["rss"] + [0.0])
        near = bool(self.limit_gb) and self.limit_gb <= 3 * top
        far = f" · the limit, {self.limit_gb:.1f} GB, is far above" if self.limit_gb and not near else ""
        placed = (near, f"Memory (GB){far}", max(top, self.limit_gb if near else 0) * 1.1 or 1)
        if placed == self._placed:  # unchanged: a new title or range re-lays out and repaints every axis
            return
        self._placed = placed
        self.limit_line.setVisible(near)
        self.mem_plot.setTitle(placed[1])
        self.mem_plot.setYRange(0, placed[2], padding=0)

    def memory_title(self) -> str:
        """The memory chart's title: the peak so far, and the limit when one is set."""
        return str(self.mem_plot.titleLabel.text)

    def redraw(self) -> None:
        if not self._dirty or not self.isVisible():  # a hidden tab catches up when it is shown
            return
        self._dirty = False
        h = self.history
        # Before the first report of a started run the axes already span its planned steps, and are painted
        # before the trainer starts (training_session.launch); with no run, a line says when they start.
        self.stack.show_charts(bool(len(h) or self.val_steps or self._total_steps))
        has_data = bool(len(h) or self.val_steps)
        if has_data != self._values_shown:  # axes over the planned steps, but no made-up 0 to 1 scale of values
            self._values_shown = has_data
            for plot in (self.loss_plot, self.lr_plot, self.tps_plot, self.mem_plot):
                plot.getAxis("left").setStyle(showValues=has_data)
        for curve in (self.loss_raw, self.loss_smooth, self.lr_curve, self.tps_curve):
            show_lone_points(curve, len(h))
        for curve in (self.mem_active, self.mem_peak, self.mem_rss):
            show_lone_points(curve, len(h))
        self.loss_raw.setData(h["step"], h["loss"])
        self.loss_smooth.setData(h["step"], h["smooth"])
        self.val_points.setData(self.val_steps, self.val_losses)
        self.lr_curve.setData(h["step"], h["lr"])
        self.tps_curve.setData(h["step"], h["tps"])
        self.mem_active.setData(h["step"], h["active"])
        self.mem_peak.setData(h["step"], h["peak"])
        self.mem_rss.setData(h["step"], h["rss"])
        readable_span(self.loss_plot, [*h["loss"], *h["smooth"], *self.val_losses])
        readable_span(self.lr_plot, h["lr"])
        readable_span(self.tps_plot, h["tps"])
        self._place_limit()

    def apply_palette(self, palette: QPalette) -> None:
        style_plot(self.view, (self.loss_plot, self.lr_plot, self.tps_plot, self.mem_plot), palette)
        for legend in (self.loss_legend, self.mem_legend):  # their labels exist already: re-rendered
            color_legend(legend, palette.color(QPalette.ColorRole.Text))
