"""Earlier runs: settings, losses and evaluations; overlay their curves; evaluate, try or export one."""

from __future__ import annotations

import time
from pathlib import Path

import pyqtgraph as pg
from PySide6.QtCore import Qt, QUrl, Signal
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (QAbstractItemView, QHBoxLayout, QLabel, QPushButton, QSplitter, QTreeWidget,
                               QTreeWidgetItem, QVBoxLayout, QWidget)

from ..core.evaluation import read_evaluations
from ..core.runs import list_runs, read_curves
from .jobs import start_job
from .theme import style_plot

PATH_ROLE = Qt.ItemDataRole.UserRole
PALETTE = ["#1f5fbf", "#e4572e", "#2a9d8f", "#8e6c8a", "#d4a017", "#7f7f7f"]


def _fmt(x: float | None) -> str:
    return f"{x:.4f}" if x is not None else "–"


def _evaluation_text(results: list[dict]) -> str:
    lines = []
    for r in results:
        step = f"step {r['step']}" if r.get("step") is not None else "latest"
        parts = [f"{name} loss {r[key]:.4f} (perplexity {r[ppl]:.2f})"
                 for name, key, ppl in (("base", "base_loss", "base_perplexity"),
                                        ("adapter", "adapter_loss", "adapter_perplexity"))
                 if r.get(key) is not None and r.get(ppl) is not None]
        what = ("all rows" if r.get("all_rows", True) else
                f"the {r.get('batches')} batches training validated on, so the adapter's loss is the run's "
                "validation loss for this checkpoint")
        lines.append(f"{r['split']} split, {what} ({r['rows']} rows / {r['tokens']} tokens), {step}: "
                     + " → ".join(parts))
    return "\n".join(lines)


def _eval_cell(results: list[dict]) -> str:
    if not results:
        return "–"
    r = results[-1]
    base, adapter = r.get("base_loss"), r.get("adapter_loss")
    return f"{_fmt(base)} → {_fmt(adapter)}" if base is not None else _fmt(adapter)


def evaluate_run(run_dir: str):
    """The job behind 'Evaluate': the default checkpoint, the run's data and settings; saved in the run."""
    from ..core.evaluation import evaluate, save_evaluation
    from ..core.inference import default_adapter

    result = evaluate(adapter=default_adapter(run_dir))
    save_evaluation(Path(run_dir), result)
    return result


class RunsView(QWidget):
    try_requested = Signal(str)  # a run folder
    export_requested = Signal(str)
    evaluated = Signal()

    def __init__(self, runs_root: Path, parent=None):
        super().__init__(parent)
        self.runs_root = Path(runs_root)
        self.eval_job = None
        self.table = QTreeWidget()
        self.table.setHeaderLabels(["Run", "Status", "Model", "Data", "Steps", "Final loss", "Best val loss",
                                    "Eval loss (base → adapter)", "Settings", "Date"])
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
        self.try_button = QPushButton("Try in Playground")
        self.try_button.setToolTip("Compare the adapter with the base, side by side.")
        self.try_button.clicked.connect(lambda: self._emit_for_selected(self.try_requested))
        self.eval_button = QPushButton("Evaluate")
        self.eval_button.setToolTip("Loss and perplexity of the base and the adapter (best checkpoint) on the test "
                                    "split, or the held-out validation split; saved in the run folder.")
        self.eval_button.clicked.connect(self.evaluate_selected)
        self.export_button = QPushButton("Fuse && export…")
        self.export_button.clicked.connect(lambda: self._emit_for_selected(self.export_requested))
        top = QHBoxLayout()
        top.addWidget(self.root_label, 1)
        top.addWidget(refresh)
        top.addWidget(open_button)
        actions = QHBoxLayout()
        actions.addWidget(self.try_button)
        actions.addWidget(self.eval_button)
        actions.addWidget(self.export_button)
        actions.addStretch(1)
        self.summary = QLabel("")
        self.summary.setWordWrap(True)
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.table)
        split.addWidget(self.plot)
        split.setSizes([260, 400])
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addLayout(actions)
        layout.addWidget(self.summary)
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
                                    str(run.last_step), _fmt(run.final_loss), _fmt(run.best_val_loss),
                                    _eval_cell(read_evaluations(run.path)), settings,
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

    def selected_run(self) -> str | None:
        items = self.table.selectedItems()
        return items[0].data(0, PATH_ROLE) if items else None

    def _emit_for_selected(self, signal) -> None:
        run = self.selected_run()
        if run:
            signal.emit(run)

    def evaluate_selected(self) -> None:
        run = self.selected_run()
        if not run or self.eval_job is not None:
            return
        self.summary.setText(f"Evaluating {Path(run).name}: the base, then the adapter…")
        self.eval_job = start_job(evaluate_run, run, on_done=self._evaluated, on_failed=self._eval_failed)
        self._update_buttons()

    def _evaluated(self, result) -> None:
        self.eval_job = None
        self.refresh()
        self.select_runs([Path(result.adapter).parent.parent.name if result.step is not None
                          else Path(result.adapter).name])
        self.evaluated.emit()

    def _eval_failed(self, message: str, details: str) -> None:
        self.eval_job = None
        self.summary.setText(f"⚠ Evaluation failed: {message}")
        self._update_buttons()

    def _update_buttons(self) -> None:
        run = self.selected_run()
        for button in (self.try_button, self.export_button):
            button.setEnabled(bool(run))
        self.eval_button.setEnabled(bool(run) and self.eval_job is None)

    def _show_summary(self) -> None:
        run = self.selected_run()
        if self.eval_job is not None:
            return
        results = read_evaluations(Path(run)) if run else []
        self.summary.setText(_evaluation_text(results) if results else
                             ("No evaluation yet: press Evaluate." if run else ""))

    def plot_selected(self) -> None:
        self._update_buttons()
        self._show_summary()
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
