"""What the Data tab shows of a report: the summary line, the row-length histogram and the preview table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QIcon, QPixmap
from PySide6.QtWidgets import QHeaderView, QTableWidget, QTableWidgetItem

from ...core.data.dataset import DataReport, SplitReport

MASK_CLEARED_NOTE = "'Train on completions only' was turned off: plain text rows have no prompt to mask"


def summary_html(report: DataReport, model_picked: bool, mask_cleared: bool, mismatch: str = "") -> str:
    """Source, format, rows per split, lengths, truncation and trained share; ready or not (as Start decides:
    `mismatch` says why the training mode does not fit the rows); the warnings."""
    rows = " · ".join(f"{s.name}: {s.rows:,} rows" for s in report.splits.values())
    parts = [f"<b>{report.source}</b>", f"format: <b>{report.format or 'unknown'}</b>", rows]
    train = report.splits.get("train")
    if train and train.rows:
        parts.append(
            f"{train.unit} min/mean/p95/max: {train.min_len}/{train.mean_len:.0f}/{train.p95_len}/{train.max_len}"
        )
        if train.truncated:
            parts.append(f"{train.truncated} truncated to {report.max_seq_length}")
        if train.trained_share is not None:
            parts.append(f"trained on {train.trained_share:.0%} of tokens")
    if report.template:
        parts.append(f"template: {report.template}")
    ready = "Ready to train." if model_picked else "The data is ready; pick a model (tab 2) to count tokens and train."
    if not report.usable:
        status = f"<span style='color:#e5534b'><b>{report.problem_count} problem(s): fix them to train.</b></span>"
    elif mismatch:
        status = f"<span style='color:#d4a017'><b>Not ready: {mismatch}.</b></span>"
    else:
        status = f"<span style='color:#2ea043'><b>{ready}</b></span>"
    note = f"<br>{MASK_CLEARED_NOTE}." if mask_cleared else ""  # information, not a warning
    return " · ".join(parts) + "<br>" + status + note + "".join(f"<br>⚠ {w}" for w in report.warnings)


def plot_lengths(plot: pg.PlotWidget, train: SplitReport) -> None:
    counts, edges = np.histogram(train.lengths, bins=min(40, max(5, len(set(train.lengths)))))
    plot.addItem(pg.BarGraphItem(x0=edges[:-1], x1=edges[1:], height=counts, brush="#7aa6da"))
    plot.setLabel("bottom", f"{train.unit} per row")
    plot.setTitle(
        f"Row lengths in {train.unit}" + ("" if train.unit == "tokens" else " (tokens once a model is picked)")
    )
    plot.setLabel("left", "rows")


THUMBNAIL = 56  # pixels a side of a picture row's thumbnail in the preview


def thumbnail(folder: Path, paths: str) -> QPixmap | None:
    """The first picture of a row (its paths as the preview shows them), scaled for the preview; None when it
    cannot be read (the check names the row)."""
    first = paths.split(", ")[0].strip()
    if not first:
        return None
    path = Path(first).expanduser()
    pixmap = QPixmap(str(path if path.is_absolute() else folder / path))
    if pixmap.isNull():
        return None
    return pixmap.scaled(
        THUMBNAIL, THUMBNAIL, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation
    )


def fill_preview(table: QTableWidget, train: SplitReport) -> None:
    """The first rows of the training split, a column per part of the row, with their line numbers."""
    columns = ["line"] + list(train.preview[0].keys())
    table.setColumnCount(len(columns))
    table.setHorizontalHeaderLabels(columns)
    table.setRowCount(len(train.preview))
    folder = Path(train.file).parent
    for r, (line, row) in enumerate(zip(train.preview_lines, train.preview, strict=True)):
        table.setItem(r, 0, QTableWidgetItem(str(line)))
        for c, key in enumerate(columns[1:], start=1):
            item = QTableWidgetItem(row.get(key, ""))
            if key == "images":  # picture rows: each row's first picture beside its paths
                pixmap = thumbnail(folder, row.get(key, ""))
                if pixmap is not None:
                    item.setIcon(QIcon(pixmap))
                    table.setRowHeight(r, THUMBNAIL + 8)
            table.setItem(r, c, item)
    if "images" in columns:
        table.setIconSize(QSize(THUMBNAIL, THUMBNAIL))
    table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
