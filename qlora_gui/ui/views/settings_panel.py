"""The settings form: every trainer setting, with what it does and what it costs, validated on entry."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QAbstractSpinBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from ...core.config import SETTING_BY_KEY, SETTINGS, TrainConfig, config_from_dict, read_yaml_mapping
from ...core.errors import ConfigError
from ...core.memory import GB
from ...core.resources import resource_path
from ...core.runs.pending_run import PendingRun
from ...core.train.command_line import apply_flag_values, train_command
from ...core.train.estimate import MemoryEstimate
from ..widgets.machines_box import MachinesBox
from ..widgets.preflight_box import PreflightBox
from ..widgets.setting_widgets import make_widget, read_value, show_value

TAB_SETTINGS = tuple(s for s in SETTINGS if s.group)  # the Settings tab's fields, box by box
LEFT_GROUPS = ("Adapter", "Batches", "Duration", "Sample answers")


def size_text(size: float) -> str:
    """Bytes as GB, or as MB below a tenth of a GB (a small model's 12 MB is not '0.00 GB')."""
    return f"{size / GB:.2f} GB" if size >= GB / 10 else f"{size / 2**20:.0f} MB"


class SettingsPanel(QWidget):
    changed = Signal()

    def __init__(self, pending: PendingRun | None = None, parent=None):
        super().__init__(parent)
        # The run being prepared: this tab sets its settings there (or why one is refused); the copied command,
        # the preflight and the Machines box read the whole run from it.
        self.pending = pending or PendingRun()
        self.changed.connect(self._publish)  # first: whoever else hears `changed` finds the run up to date
        self._widgets: dict[str, QWidget] = {}
        self._reasons: dict[str, QLabel] = {}  # beside each field: why its value is refused
        self.problem = ""  # the current settings problem, in the form's words ("" when none)
        self.error = QLabel("")
        self.error.setStyleSheet("color: #e5534b;")
        self.error.setWordWrap(True)

        self.presets = QComboBox()
        self.presets.addItem("Presets…")
        self._preset_values: list[dict] = []  # each preset's settings, to see which one the form holds
        self._preset_names: list[tuple[str, str]] = []  # each preset's name and what it is for
        for p in sorted(resource_path("presets").glob("*.yaml")):
            text = p.read_text(encoding="utf-8")
            first = text.splitlines()[0] if text else ""
            about = first.lstrip("# ").strip() if first.startswith("#") else ""
            self._preset_names.append((p.stem.split(" ", 1)[-1], about))
            self.presets.addItem(self._entry(len(self._preset_names), ""), str(p))
            self.presets.setItemData(self.presets.count() - 1, about, Qt.ItemDataRole.ToolTipRole)
            try:
                self._preset_values.append(read_yaml_mapping(p))
            except (ConfigError, OSError, ValueError):
                self._preset_values.append({})
        # The button as wide as "Preset: Quick test"; the open list as wide as the entries with what each is for
        self.presets.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.presets.setMinimumContentsLength(
            max(len(f"Preset: {name}") for name, _ in self._preset_names or [("", "")])
        )
        self.presets.view().setMinimumWidth(self.presets.view().sizeHintForColumn(0) + 24)
        self.presets.setToolTip("Settings for a purpose, applied over the form; hover one for what it is for")
        self.presets.activated.connect(self.apply_preset)
        self.changed.connect(self._mark_preset)
        save = QPushButton("Save…")
        save.setToolTip("Save these settings as a YAML file that `qlora-gui train -c` reads.")
        save.clicked.connect(self.save)
        load = QPushButton("Load…")
        load.clicked.connect(self.load)
        copy = QPushButton("Copy CLI command")
        copy.clicked.connect(self.copy_command)
        top = QHBoxLayout()
        top.addWidget(self.presets)
        top.addWidget(save)
        top.addWidget(load)
        top.addWidget(copy)
        top.addStretch(1)

        self.estimate_label = QLabel("Memory estimate: pick a model.")
        self.estimate_label.setWordWrap(True)
        self.estimate_bar = QProgressBar()
        self.estimate_bar.setRange(0, 1000)
        self.estimate_bar.setTextVisible(False)
        self.estimate_bar.setMaximumHeight(10)
        self.preflight = PreflightBox(self.pending.config_to_start)
        self.preflight.applied.connect(self.set_config)

        form_host = QWidget()
        columns = QHBoxLayout(form_host)
        left, right = QVBoxLayout(), QVBoxLayout()
        columns.addLayout(left, 1)
        columns.addLayout(right, 1)
        groups: dict[str, QFormLayout] = {}
        for s in TAB_SETTINGS:
            if s.group not in groups:
                box = QGroupBox(s.group)
                groups[s.group] = QFormLayout(box)
                groups[s.group].setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.FieldsStayAtSizeHint)
                (left if s.group in LEFT_GROUPS else right).addWidget(box)
            widget = make_widget(s, self.changed.emit)
            widget.setMinimumWidth(260)
            label = QLabel(s.label)
            label.setToolTip(widget.toolTip())
            field = QWidget()  # the widget, and under it why its value is refused (when it is)
            rows = QVBoxLayout(field)
            rows.setContentsMargins(0, 0, 0, 0)
            rows.setSpacing(2)
            rows.addWidget(widget, 0, Qt.AlignmentFlag.AlignLeft)  # as wide as before when the reason shows
            reason = QLabel("")  # one line: a wrapped label in a form row gets cut (its height is not asked for)
            reason.setStyleSheet("color: #e5534b;")
            reason.hide()
            rows.addWidget(reason)
            groups[s.group].addRow(label, field)
            self._widgets[s.key] = widget
            self._reasons[s.key] = reason
        left.addStretch(1)
        self.machines = MachinesBox(self.pending.config_to_start)
        self.machines.changed.connect(self.changed.emit)
        right.addWidget(self.machines)
        right.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(form_host)

        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.estimate_label)
        layout.addWidget(self.estimate_bar)
        layout.addWidget(self.preflight)
        layout.addWidget(self.error)
        layout.addWidget(scroll, 1)
        self.set_config(TrainConfig())

    def widget(self, key: str) -> QWidget:
        """The box that edits one setting (a key of TAB_SETTINGS)."""
        return self._widgets[key]

    def widget_keys(self) -> list[str]:
        return list(self._widgets)

    def reason_label(self, key: str) -> QLabel:
        """The line beside a setting that says why its value is refused (hidden when it is not)."""
        return self._reasons[key]

    # ------------------------------------------------------------ config in and out

    def set_config(self, cfg: TrainConfig) -> None:
        for s in TAB_SETTINGS:
            show_value(self._widgets[s.key], s, cfg.value(s.key))
        self.changed.emit()

    def _publish(self) -> None:
        self.pending.set_settings(self.check(), self.problem)

    def set_value(self, key: str, value: object) -> None:
        """One setting, as if typed into its field."""
        show_value(self._widgets[key], SETTING_BY_KEY[key], value)
        self.changed.emit()

    def config(self, base: TrainConfig | None = None) -> TrainConfig:
        """The settings as a TrainConfig; raises ConfigError naming a field whose text is not a value."""
        cfg = dataclasses.replace(base) if base else TrainConfig()
        apply_flag_values(cfg, {s.key: read_value(self._widgets[s.key], s) for s in TAB_SETTINGS})
        return cfg

    def check(self) -> TrainConfig | None:
        """The config, or None with the reason (the setting named as in the form) shown under the form.

        The rules are the trainer's own (`TrainConfig.validate`), so Start is never enabled for settings
        that would fail after launch; model and data are checked by their own tabs."""
        self.problem = ""
        try:
            cfg = self.config()
            dataclasses.replace(cfg, model=cfg.model or "-", data=cfg.data or "-").validate()
        except ConfigError as e:
            self.problem = f"{self.label_of(e.setting)}: {e.why}" if e.setting else str(e)
            self.error.setText(self.problem)
            self._mark(e.setting, e.why or str(e))
            return None
        self._mark("")
        machines = self.machines.problem()  # the Machines box's table, where a setting's problem shows
        self.problem = f"Machines: {machines}" if machines else ""
        self.error.setText(self.problem)
        return None if machines else cfg

    def label_of(self, setting: str) -> str:
        """A setting's name as the app shows it ('lora_parameters.rank' -> 'Rank')."""
        found = SETTING_BY_KEY.get(setting)
        return found.label if found else setting.replace("_", " ")

    def _mark(self, setting: str, why: str = "") -> None:
        """Mark the field whose value is refused, its value kept as typed and the reason beside it."""
        for key, w in self._widgets.items():
            # A style sheet on a spin box itself would drop its arrows (Qt then draws it from the sheet alone):
            # its text box is tinted instead
            (w.lineEdit() if isinstance(w, QAbstractSpinBox) else w).setStyleSheet(
                "border: 1px solid #e5534b; background: rgba(229, 83, 75, 40);" if key == setting else ""
            )
            self._reasons[key].setText(f"Refused: {why}" if key == setting else "")
            self._reasons[key].setVisible(key == setting)

    def show_memory_estimate(
        self, est: MemoryEstimate | None, budget: int, measured_gb: float | None = None
    ) -> float | None:
        """Show an estimate against the memory this machine can give, or the peak measured for these very
        settings (Check speed & memory) beside it; returns the share used (None: unknown)."""
        if measured_gb is not None:
            share = measured_gb * GB / budget
            said = f"; the estimate said {size_text(est.total)}" if est is not None else ""
            self.show_estimate(
                f"Memory: {size_text(measured_gb * GB)} peak measured for these settings (Check speed & memory) of "
                f"{budget / GB:.0f} GB available{said}."
                + (" Over the limit: lower the batch size or max length, or quantize the base." if share > 1 else ""),
                share,
            )
            return share
        if est is None:
            self.show_estimate("Memory estimate: unknown for this model's config.", None)
            return None
        share = est.total / budget
        text = (
            f"Memory estimate: {size_text(est.total)} of {budget / GB:.0f} GB available "
            f"(weights {size_text(est.weights)}, adapters + optimizer {size_text(est.adapters)}, "
            f"activations {size_text(est.activations)}). A rough guide."
        )
        if share > 1:
            text += " Over the limit: lower the batch size or max length, or quantize the base."
        self.show_estimate(text, share)
        return share

    def show_estimate(self, text: str, share: float | None) -> None:
        self.estimate_label.setText(text)
        if share is None:
            self.estimate_bar.setValue(0)
            return
        self.estimate_bar.setValue(int(min(share, 1.0) * 1000))
        color = "#c00000" if share > 1 else "#d4a017" if share > 0.75 else "#2ea043"
        self.estimate_bar.setStyleSheet(f"QProgressBar::chunk {{ background: {color}; }}")

    # ------------------------------------------------------------ presets and files

    def active_preset(self) -> str:
        """The preset whose settings the form holds now ("" when none)."""
        try:
            current = self.config()
        except ConfigError:
            return ""
        for i, values in enumerate(self._preset_values, start=1):
            keys = {k: v for k, v in values.items() if k not in ("model", "data", "adapter_path")}
            try:
                if keys and config_from_dict(keys, current)[0] == current:
                    return self._preset_names[i - 1][0]
            except ConfigError:
                continue
        return ""

    def _mark_preset(self) -> None:
        """The menu names the preset in use and ticks it; each entry's tooltip says what it is for."""
        active = self.active_preset()
        self.presets.setItemText(0, f"Preset: {active}" if active else "Presets…")
        for i in range(1, self.presets.count()):
            self.presets.setItemText(i, self._entry(i, active))

    def _entry(self, index: int, active: str) -> str:
        """A preset's line in the menu: ticked when the form holds it, and what it is for."""
        name, about = self._preset_names[index - 1]
        return ("✓ " if name == active else "") + name + (f" — {about}" if about else "")

    def apply_preset(self, index: int) -> None:
        path = self.presets.itemData(index)
        if path:
            self._load_file(Path(path))
        self.presets.setCurrentIndex(0)

    def _load_file(self, path: Path) -> None:
        try:
            values = read_yaml_mapping(path)
            cfg, _ = config_from_dict(
                {k: v for k, v in values.items() if k not in ("model", "data", "adapter_path")}, self.config()
            )
        except (ConfigError, OSError, ValueError) as e:
            self.error.setText(f"{path.name}: {e}")
            return
        self.set_config(cfg)

    def load(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Load settings", "", "YAML (*.yaml *.yml)")
        if path:
            self._load_file(Path(path))

    def save(self) -> None:
        cfg = self.pending.config_to_start()
        if cfg is None:
            return
        path, _ = QFileDialog.getSaveFileName(self, "Save settings", "lora.yaml", "YAML (*.yaml)")
        if path:
            from ...core.runs.checkpoints import atomic_write_text

            atomic_write_text(Path(path), cfg.to_yaml())

    def copy_command(self) -> str | None:
        cfg = self.pending.config_to_start()
        if cfg is None:
            return None
        text = train_command(cfg)
        QGuiApplication.clipboard().setText(text)
        return text
