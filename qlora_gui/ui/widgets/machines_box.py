"""The Settings tab's Machines box: train on this Mac, or on several (data parallel over MLX's own layer).

Several Macs are an mlx.launch hostfile, edited here as a table (or loaded and saved as the file itself): each
Mac's ssh name and the IP addresses the ranks connect to, and the backend. "Check machines" runs the check a
run makes before it starts (every Mac answers over ssh, with the same Python environment, model and data) in a
background job; Start runs it again. The first Mac is this one: rank 0 writes the run folder and reports.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QRadioButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ...core.config import TrainConfig
from ...core.distributed.checks import CheckReport
from ...core.distributed.hostfile import JACCL_NEEDS, LOCAL, Host, Machines
from ...core.distributed.supervisor import check_run_machines
from ...core.errors import UserError
from ..workers.jobs import FunctionJob, start_job

BACKENDS = (
    ("ring", "Ring (TCP over the Thunderbolt bridge or Ethernet)"),
    ("jaccl", "JACCL (RDMA over Thunderbolt 5, every pair of Macs cabled)"),
    ("jaccl-ring", "JACCL ring (RDMA over Thunderbolt 5, each Mac cabled to its neighbours)"),
)
RING_NOTE = (
    "Ring: TCP between the Macs. Cable them with Thunderbolt (a Thunderbolt bridge gives each Mac an address) or "
    "use Ethernet, and list each Mac's address under IPs. Every Mac needs ssh without a password from this one "
    "(Remote Login on, ssh-copy-id), the same Python environment at the same path, and the model and data at "
    "the same paths (or tick Share)."
)
COLUMNS = ("ssh name", "IPs", "RDMA devices (JACCL)")


@dataclass
class MachinesChoice:
    machines: Machines
    share: bool  # copy the model and data to the other Macs before training


MACHINE = "Mac" if sys.platform == "darwin" else "machine"  # what the radio buttons call a computer, truthfully


class MachinesBox(QGroupBox):
    changed = Signal()

    def __init__(self, config_source: Callable[[], TrainConfig | None], parent: QWidget | None = None):
        super().__init__("Machines", parent)
        self.config_source = config_source
        self.job: FunctionJob | None = None
        self.report: CheckReport | None = None
        self.this_mac = QRadioButton(f"This {MACHINE}")
        self.this_mac.setToolTip(f"Train in this app's own process, on this {MACHINE} alone.")
        self.several = QRadioButton(f"Several {MACHINE}s (data parallel)")
        self.several.setToolTip(
            "Each Mac trains its part of every batch and the gradients are summed over the network (MLX's "
            "distributed layer, started with mlx.launch). The batch size stays the whole batch: the result is "
            "the same adapter as on one Mac, sooner when the Macs are fast and well connected."
        )
        self.this_mac.setChecked(True)
        self.this_mac.toggled.connect(self._on_mode)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.table.verticalHeader().setVisible(False)
        self.table.setMaximumHeight(150)  # a few Macs; it scrolls beyond
        self.table.setToolTip(
            "One row per Mac, this one first (rank 0). ssh name: the name or address to ssh to (127.0.0.1 for "
            "this Mac: it starts as a local process). IPs: where the ranks connect, comma-separated. RDMA "
            "devices (JACCL only): the device towards each Mac in row order, '-' for the Mac itself."
        )
        self.table.itemChanged.connect(lambda _: self._edited())
        self.backend = QComboBox()
        for key, label in BACKENDS:
            self.backend.addItem(label, key)
        self.backend.currentIndexChanged.connect(lambda _: self._edited())
        self.note = QLabel(RING_NOTE)
        self.note.setWordWrap(True)
        self.share = QCheckBox(f"Share the model and data (copy them to the other {MACHINE}s with rsync first)")
        add, remove = QPushButton(f"Add {MACHINE}"), QPushButton("Remove")
        add.clicked.connect(lambda: self._add_row(Host("", [])))
        remove.clicked.connect(self._remove_row)
        load, save = QPushButton("Load hostfile…"), QPushButton("Save hostfile…")
        load.clicked.connect(self._load)
        save.clicked.connect(self._save)
        self.check_button = QPushButton("Check machines")
        self.check_button.setToolTip(
            f"Ask every {MACHINE}, over ssh, for its Python environment and the content of the model and data "
            "(the same check Start makes before any weights load)."
        )
        self.check_button.clicked.connect(self.check)
        self.result = QLabel("")
        self.result.setWordWrap(True)
        buttons = QHBoxLayout()
        for b in (add, remove, load, save, self.check_button):
            buttons.addWidget(b)
        buttons.addStretch(1)
        self.detail = QWidget()
        inner = QVBoxLayout(self.detail)
        inner.setContentsMargins(0, 0, 0, 0)
        for w in (self.table, self.backend, self.note, self.share):
            inner.addWidget(w)
        inner.addLayout(buttons)
        inner.addWidget(self.result)
        mode = QHBoxLayout()
        mode.addWidget(self.this_mac)
        mode.addWidget(self.several)
        mode.addStretch(1)
        layout = QVBoxLayout(self)
        layout.addLayout(mode)
        layout.addWidget(self.detail)
        self._on_mode()

    # ------------------------------------------------------------ the choice

    def _several_or_say(self) -> Machines | None:
        """The several Macs of the table; None (after saying why, when the table is wrong) otherwise."""
        try:
            return self.machines()
        except UserError as e:
            self._say(f"⚠ {e}")
            return None

    def machines(self) -> Machines | None:
        """The Macs to train on (None: this Mac); UserError naming the row and the fix when the table is wrong."""
        if self.this_mac.isChecked():
            return None
        hosts = []
        for row in range(self.table.rowCount()):
            ssh, ips, rdma = (self._cell(row, c) for c in range(len(COLUMNS)))
            devices = [None if d in ("-", "") else d for d in _split(rdma)]
            hosts.append(Host(ssh, _split(ips), devices if rdma else []))
        data = {"backend": self.backend.currentData(), "hosts": [vars(h) for h in hosts]}
        return Machines.from_json(data, "Machines")

    def problem(self) -> str:
        """What is wrong with the table, for the Settings tab's message ('' when nothing)."""
        try:
            self.machines()
        except UserError as e:
            return str(e).removeprefix("Machines: ")
        return ""

    def choice(self) -> MachinesChoice | None:
        machines = self.machines()
        return MachinesChoice(machines, self.share.isChecked()) if machines is not None else None

    def set_machines(self, machines: Machines | None, share: bool = False) -> None:
        (self.several if machines is not None else self.this_mac).setChecked(True)
        self.table.blockSignals(True)
        self.table.setRowCount(0)
        for host in machines.hosts if machines else []:
            self._add_row(host)
        self.table.blockSignals(False)
        if machines is not None:
            self.backend.setCurrentIndex(max(0, self.backend.findData(machines.backend)))
        self.share.setChecked(share)
        self._edited()

    def state(self) -> str:
        """What the window remembers between starts."""
        try:
            machines = self.machines()
        except UserError:
            machines = None
        hostfile = machines.to_json() if machines else None
        return json.dumps({"several": self.several.isChecked(), "hostfile": hostfile, "share": self.share.isChecked()})

    def restore(self, text: str) -> None:
        try:
            saved: dict[str, Any] = json.loads(text or "{}")
            machines = Machines.from_json(saved["hostfile"]) if saved.get("hostfile") else None
        except (ValueError, KeyError, TypeError, UserError):
            return  # from an older version, or never saved: this Mac
        self.set_machines(machines if saved.get("several") else None, bool(saved.get("share")))

    # ------------------------------------------------------------ the check

    def check(self) -> None:
        cfg = self.config_source()
        if cfg is None or self.job is not None:
            return
        if not cfg.model or not cfg.data:
            self._say("Pick a dataset and a model first: the check compares them on every Mac.")
            return
        machines = self._several_or_say()
        if machines is None:
            return
        self.check_button.setEnabled(False)
        self._say(f"Checking {machines.describe()}…")
        self.job = start_job(check_run_machines, cfg, machines, on_done=self._checked, on_failed=self._check_failed)

    def _checked(self, report: CheckReport) -> None:
        self.job, self.report = None, report
        self.check_button.setEnabled(True)
        lines = [("✓ " if report.ok else "⚠ ") + report.summary()] + [f"• {line}" for line in report.details()]
        self._say("\n".join(lines))

    def _check_failed(self, message: str, details: str) -> None:
        self.job = None
        self.check_button.setEnabled(True)
        self._say(f"⚠ the check could not run: {message}")
        self.result.setToolTip(details)

    # ------------------------------------------------------------ the table

    def _on_mode(self) -> None:
        several = self.several.isChecked()
        self.detail.setVisible(several)
        if several and self.table.rowCount() == 0:  # this Mac first (a local process), then the others
            self._add_row(Host(LOCAL, []))
            self._add_row(Host("", []))
        self._edited()

    def _add_row(self, host: Host) -> None:
        row = self.table.rowCount()
        self.table.insertRow(row)
        rdma = ", ".join("-" if d is None else str(d) for d in host.rdma)
        for col, text in enumerate((host.ssh, ", ".join(host.ips), rdma)):
            self.table.setItem(row, col, QTableWidgetItem(text))

    def _remove_row(self) -> None:
        rows = sorted({i.row() for i in self.table.selectedIndexes()}, reverse=True) or [self.table.rowCount() - 1]
        for row in rows:
            if row >= 0:
                self.table.removeRow(row)
        self._edited()

    def _cell(self, row: int, col: int) -> str:
        item = self.table.item(row, col)
        return item.text().strip() if item else ""

    def _edited(self) -> None:
        jaccl = str(self.backend.currentData()).startswith("jaccl")
        self.table.setColumnHidden(2, not jaccl)
        self.note.setText(JACCL_NEEDS + "." if jaccl else RING_NOTE)
        if self.job is None:  # a check's verdict is about the table as it was
            self.report = None
            self._say("")
        self.changed.emit()

    def _say(self, text: str) -> None:
        self.result.setText(text)

    def _load(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Load hostfile", "", "Hostfile (*.json)")
        if not path:
            return
        try:
            self.set_machines(Machines.read(path), self.share.isChecked())
        except UserError as e:
            self._say(f"⚠ {e}")

    def _save(self) -> None:
        machines = self._several_or_say()
        if machines is None:
            return
        path, _ = QFileDialog.getSaveFileName(self, "Save hostfile", "hosts.json", "Hostfile (*.json)")
        if path:
            from ...core.runs.checkpoints import atomic_write_text

            atomic_write_text(Path(path), machines.to_text())
            self._say(f"Saved {path}: `qlora-gui train --hosts {path}` and mlx.launch --hostfile read it.")


def _split(text: str) -> list[str]:
    return [part for part in text.replace(",", " ").split() if part]
