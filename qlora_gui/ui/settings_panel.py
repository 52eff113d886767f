"""The settings form: every trainer setting, with what it does and what it costs, validated on entry."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (QCheckBox, QComboBox, QDoubleSpinBox, QFileDialog, QFormLayout, QGroupBox,
                               QHBoxLayout, QLabel, QLineEdit, QProgressBar, QPushButton, QScrollArea, QSpinBox,
                               QVBoxLayout, QWidget)

from ..core.config import TrainConfig, config_from_dict
from ..core.errors import ConfigError
from ..core.resources import resource_path
from .settings_fields import FIELDS, LEFT_GROUPS, SPECIAL_VALUES

class SettingsPanel(QWidget):
    changed = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self._widgets: dict[str, QWidget] = {}
        self.problem = ""  # the current settings problem, in the form's words ("" when none)
        self.error = QLabel("")
        self.error.setStyleSheet("color: #e5534b;")
        self.error.setWordWrap(True)

        self.presets = QComboBox()
        self.presets.addItem("Presets…")
        for p in sorted(resource_path("presets").glob("*.yaml")):
            self.presets.addItem(p.stem.split(" ", 1)[-1], str(p))
        self.presets.activated.connect(self._apply_preset)
        save = QPushButton("Save…")
        save.setToolTip("Save these settings as a YAML file that `qlora-gui train -c` reads.")
        save.clicked.connect(self._save)
        load = QPushButton("Load…")
        load.clicked.connect(self._load)
        copy = QPushButton("Copy CLI command")
        copy.clicked.connect(self.copy_command)
        self.command_source = None  # set by the window: returns the full config for the command line
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

        form_host = QWidget()
        columns = QHBoxLayout(form_host)
        left, right = QVBoxLayout(), QVBoxLayout()
        columns.addLayout(left, 1)
        columns.addLayout(right, 1)
        groups: dict[str, QFormLayout] = {}
        for group, key, label, kind, options, tip in FIELDS:
            if group not in groups:
                box = QGroupBox(group)
                groups[group] = QFormLayout(box)
                groups[group].setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.FieldsStayAtSizeHint)
                (left if group in LEFT_GROUPS else right).addWidget(box)
            widget = self._make(key, kind, options)
            widget.setMinimumWidth(260)
            widget.setToolTip(tip)
            lab = QLabel(label)
            lab.setToolTip(tip)
            groups[group].addRow(lab, widget)
            self._widgets[key] = widget
        left.addStretch(1)
        right.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(form_host)

        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.estimate_label)
        layout.addWidget(self.estimate_bar)
        layout.addWidget(self.error)
        layout.addWidget(scroll, 1)
        self.set_config(TrainConfig())

    def _make(self, key: str, kind: str, options) -> QWidget:
        if kind == "choice":
            w = QComboBox()
            w.addItems(options)
            w.currentIndexChanged.connect(self.changed)
        elif kind in ("int", "float"):
            if kind == "int":
                w = QSpinBox(minimum=options[0], maximum=options[1])
            else:
                w = QDoubleSpinBox(minimum=options[0], maximum=options[1], decimals=options[2])
            if key in SPECIAL_VALUES:
                w.setSpecialValueText(SPECIAL_VALUES[key])  # shown at the minimum
            w.valueChanged.connect(self.changed)
        elif kind == "bool":
            w = QCheckBox()
            w.toggled.connect(self.changed)
        else:  # "text" and "sci" are line edits, checked when the config is built
            w = QLineEdit(placeholderText=options or "")
            w.textChanged.connect(self.changed)
        return w

    # ------------------------------------------------------------ config in and out

    def set_config(self, cfg: TrainConfig) -> None:
        values = dataclasses.asdict(cfg)
        for key, w in self._widgets.items():
            if key.startswith("lora."):
                value = cfg.lora_parameters.get(key[5:])
            else:
                value = values[key]
            w.blockSignals(True)
            if isinstance(w, QComboBox):
                w.setCurrentText(str(value))
            elif isinstance(w, QCheckBox):
                w.setChecked(bool(value))
            elif isinstance(w, (QSpinBox, QDoubleSpinBox)):
                w.setValue(-1 if value is None and key == "warmup_steps" else (value or 0))
            elif key == "lora.keys":
                w.setText(", ".join(value or []))
            else:
                w.setText(f"{value:g}" if isinstance(value, float) else str(value or ""))
            w.blockSignals(False)
        self.changed.emit()

    def config(self, base: TrainConfig | None = None) -> TrainConfig:
        """The settings as a TrainConfig; raises ConfigError naming a bad field."""
        cfg = dataclasses.replace(base) if base else TrainConfig()
        lora = dict(cfg.lora_parameters)
        lora.pop("keys", None)
        for key, w in self._widgets.items():
            if isinstance(w, QComboBox):
                value = w.currentText()
            elif isinstance(w, QCheckBox):
                value = w.isChecked()
            elif isinstance(w, (QSpinBox, QDoubleSpinBox)):
                value = w.value()
            elif key == "lora.keys":
                value = [k.strip() for k in w.text().split(",") if k.strip()] or None
            else:
                try:
                    value = float(w.text())
                except ValueError:
                    raise ConfigError(f"learning rate '{w.text()}' is not a number", setting=key,
                                      why=f"'{w.text()}' is not a number; write it like 1e-4") from None
            if key.startswith("lora."):
                if value is not None:
                    lora[key[5:]] = value
            else:
                setattr(cfg, key, value)
        cfg.lora_parameters = lora
        cfg.iters = cfg.iters or None
        cfg.warmup_steps = None if cfg.warmup_steps == -1 else cfg.warmup_steps
        cfg.memory_limit_gb = cfg.memory_limit_gb or None
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
            self._mark(e.setting)
            return None
        self.error.setText("")
        self._mark("")
        return cfg

    def label_of(self, setting: str) -> str:
        """A setting's name as the form shows it ('lora_parameters.rank' -> 'Rank')."""
        key = setting.replace("lora_parameters.", "lora.")
        return next((label for _, k, label, *_ in FIELDS if k == key), setting.replace("_", " "))

    def _mark(self, setting: str) -> None:
        key = setting.replace("lora_parameters.", "lora.")
        for k, w in self._widgets.items():
            w.setStyleSheet("border: 1px solid #e5534b;" if k == key else "")

    def show_estimate(self, text: str, share: float | None) -> None:
        self.estimate_label.setText(text)
        if share is None:
            self.estimate_bar.setValue(0)
            return
        self.estimate_bar.setValue(int(min(share, 1.0) * 1000))
        color = "#c00000" if share > 1 else "#d4a017" if share > 0.75 else "#2ea043"
        self.estimate_bar.setStyleSheet(f"QProgressBar::chunk {{ background: {color}; }}")

    # ------------------------------------------------------------ presets and files

    def _apply_preset(self, index: int) -> None:
        path = self.presets.itemData(index)
        if path:
            self._load_file(Path(path))
        self.presets.setCurrentIndex(0)

    def _load_file(self, path: Path) -> None:
        try:
            import yaml

            values = yaml.safe_load(path.read_text()) or {}
            cfg, _ = config_from_dict({k: v for k, v in values.items() if k not in ("model", "data", "adapter_path")},
                                      self.config())
        except (ConfigError, OSError, ValueError) as e:
            self.error.setText(f"{path.name}: {e}")
            return
        self.set_config(cfg)

    def _load(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Load settings", "", "YAML (*.yaml *.yml)")
        if path:
            self._load_file(Path(path))

    def _save(self) -> None:
        cfg = self.command_source() if self.command_source else self.check()
        if cfg is None:
            return
        path, _ = QFileDialog.getSaveFileName(self, "Save settings", "lora.yaml", "YAML (*.yaml)")
        if path:
            from ..core.checkpoints import atomic_write_text

            atomic_write_text(Path(path), cfg.to_yaml())

    def copy_command(self) -> str | None:
        from ..train_cli import command_line

        cfg = self.command_source() if self.command_source else self.check()
        if cfg is None:
            return None
        text = command_line(cfg)
        QGuiApplication.clipboard().setText(text)
        return text
