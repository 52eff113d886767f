"""The Train tab's Machines table: each rank's host and its tokens per second, and their total, as reported."""

from __future__ import annotations

from PySide6.QtWidgets import QTreeWidget, QTreeWidgetItem

from ...core.events import RunStarted, StepReport


class MachineRates(QTreeWidget):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.setHeaderLabels(["Rank", "Machine", "Tokens/s", "Share"])
        self.setRootIsDecorated(False)
        self.setToolTip(
            "Each machine's part of the training speed at the last report. The machines step together: the "
            "slowest sets the pace, and a much lower share means that machine gets fewer rows or waits."
        )
        self.machines: list[str] = []

    def on_started(self, e: RunStarted) -> bool:
        """Rows for a run's machines; False when it trains on one (the table is then hidden)."""
        self.machines = list(e.machines)
        self.clear()
        for rank, host in enumerate(self.machines):
            self.addTopLevelItem(QTreeWidgetItem([str(rank), host, "–", "–"]))
        if self.machines:
            self.addTopLevelItem(QTreeWidgetItem(["", "all", "–", ""]))
        return bool(self.machines)

    def on_progress(self, e: StepReport) -> None:
        rates = e.rank_tokens_per_sec
        if not self.machines or len(rates) != len(self.machines):
            return
        total = sum(rates)
        for rank, rate in enumerate(rates):
            item = self.topLevelItem(rank)
            item.setText(2, f"{rate:,.0f}")
            item.setText(3, f"{rate / total:.0%}" if total else "–")
        self.topLevelItem(len(rates)).setText(2, f"{e.tokens_per_sec:,.0f}")
