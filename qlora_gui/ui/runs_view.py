"""Earlier runs: their settings and final losses; select two or more to overlay their loss curves."""

from __future__ import annotations

import time
from pathlib import Path

import pyqtgraph as pg
from PySide6.QtCore import Qt, QUrl
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (QAbstractItemView, QHBoxLayout, QLabel, QPushButton, QSplitter, QTreeWidget,
                               QTreeWidgetItem, QVBoxLayout, QWidget)

from ..core.runs import list_runs, read_curves
from .theme import style_plot

PATH_ROLE = Qt.ItemDataRole.UserRole
PALETTE = ["#1f5fbf", "#e4572e", "#2a9d8f", "#8e6c8a", "#d4a017", "#7f7f7f"]


def _fmt(x: float | None) -> str:
    return f"{x:.4f}" if x is not None else "–"


class RunsView(QWidget):
    def __init__(self, runs_root: Path, parent=None):
        super().__init__(parent)
        self.runs_root = Path(runs_root)
        self.table = QTreeWidget()
        self.table.setHeaderLabels(["Run", "Status", "Model", "Data", "Steps", "Final loss", "Best val loss",
                                    "Settings", "Date"])
        self.table.setRootIsDecorated(False)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.itemSelectionChanged.connect(self.plot_selected)
        self.table.setSortingEnabled(True)
        self.plot = pg.PlotWidget(title="Loss curves of the selected runs (solid: train, dots: validation)")
        self.plot.addLegend(offset=(-10, 10))
        self.plot.showGrid(x=True, y=True, alpha=0.2)
        self.plot.setLabel("bottom", "step")
        self.plot.setMenuEnabled(False)
        self.root_label = QLabel()
        refresh = QPushButton("Refresh")
        refresh.clicked.connect(self.refresh)
        open_button = QPushButton("Show in file manager")
        open_button.clicked.connect(self._open_selected)
        top = QHBoxLayout()
        top.addWidget(self.root_label, 1)
        top.addWidget(refresh)
        top.addWidget(open_button)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.table)
        split.addWidget(self.plot)
        split.setSizes([260, 400])
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(split, 1)
        self.refresh()

    def set_root(self, root: Path) -> None:
        self.runs_root = Path(root)
        self.refresh()

    def refresh(self) -> None:
        self.root_label.setText(f"Runs in {self.runs_root} (select two or more to compare)")
        self.table.clear()
        for run in list_runs(self.runs_root):
            c = run.config
            lora = c.get("lora_parameters") or {}
            settings = (f"{c.get('fine_tune_type', 'lora')} r{lora.get('rank')} · lr {c.get('learning_rate')} · "
                        f"bs {c.get('batch_size')}×{c.get('grad_accumulation_steps')}"
                        + (f" · {c['quantize_bits']}-bit" if c.get("quantize_bits") else ""))
            item = QTreeWidgetItem([run.name, run.status, run.model_name, Path(str(c.get("data", ""))).name,
                                    str(run.last_step), _fmt(run.final_loss), _fmt(run.best_val_loss), settings,
                                    time.strftime("%Y-%m-%d %H:%M", time.localtime(run.modified))])
            item.setData(0, PATH_ROLE, str(run.path))
            self.table.addTopLevelItem(item)
        for col in range(self.table.columnCount()):
            self.table.resizeColumnToContents(col)
        self.plot_selected()

    def run_count(self) -> int:
        return self.table.topLevelItemCount()

    def select_runs(self, names: list[str]) -> None:
        for i in range(self.table.topLevelItemCount()):
            item = self.table.topLevelItem(i)
            item.setSelected(item.text(0) in names)

    def plot_selected(self) -> None:
        self.plot.clear()
        self.plotted = []
        for n, item in enumerate(self.table.selectedItems()):
            curves = read_curves(Path(item.data(0, PATH_ROLE)))
            color = PALETTE[n % len(PALETTE)]
            self.plot.plot(curves.steps, curves.losses, pen=pg.mkPen(color, width=2), name=item.text(0))
            if curves.val_steps:
                self.plot.plot(curves.val_steps, curves.val_losses, pen=None, symbol="o", symbolSize=7,
                               symbolBrush=color, symbolPen=None)
            self.plotted.append(item.text(0))

    def apply_palette(self, palette) -> None:
        style_plot(self.plot, (self.plot.getPlotItem(),), palette)

    def _open_selected(self) -> None:
        items = self.table.selectedItems()
        target = items[0].data(0, PATH_ROLE) if items else str(self.runs_root)
        QDesktopServices.openUrl(QUrl.fromLocalFile(target))
