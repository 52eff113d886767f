"""The rows a run's adapter finds hardest, and those it improved least, from the last Evaluate."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QLabel, QTableWidget, QTableWidgetItem, QVBoxLayout

from ...core.after.row_losses import RowLoss, hardest

HEADERS = ("Line", "Tokens", "Base loss", "Adapter loss", "Gain", "Row")


def _table(rows: list[RowLoss]) -> QTableWidget:
    table = QTableWidget(len(rows), len(HEADERS))
    table.setHorizontalHeaderLabels(HEADERS)
    table.verticalHeader().hide()
    table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
    for r, row in enumerate(rows):
        cells = (
            str(row.line),
            str(row.tokens),
            "–" if row.base_loss is None else f"{row.base_loss:.4f}",
            f"{row.adapter_loss:.4f}",
            "–" if row.gain is None else f"{row.gain:+.4f}",
            row.text,
        )
        for c, text in enumerate(cells):
            item = QTableWidgetItem(text)
            if c < 5:
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            else:
                item.setToolTip(text)
            table.setItem(r, c, item)
    table.resizeColumnsToContents()
    table.horizontalHeader().setStretchLastSection(True)
    return table


class HardRowsDialog(QDialog):
    def __init__(self, run_name: str, rows: list[RowLoss], measured: str, parent=None):
        super().__init__(parent)
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.setWindowTitle(f"Hardest rows — {run_name}")
        highest, least = hardest(rows)
        self.highest, self.least = _table(highest), _table(least)
        layout = QVBoxLayout(self)
        layout.addWidget(
            QLabel(
                f"Each row's own loss ({measured}). Line: the row's line in its file; gain: how "
                "much the adapter lowered the row's loss."
            )
        )
        layout.addWidget(QLabel(f"<b>Highest adapter loss</b> ({len(highest)} of {len(rows)} rows)"))
        layout.addWidget(self.highest, 1)
        layout.addWidget(QLabel(f"<b>Improved least by the adapter</b> ({len(least)})"))
        layout.addWidget(self.least, 1)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        self.resize(980, 680)
