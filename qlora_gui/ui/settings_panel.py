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

# (group, key, label, kind, options, tooltip). "lora.x" keys live in lora_parameters.
FIELDS = [
    ("Adapter", "fine_tune_type", "Method", "choice", ["lora", "dora"],
     "LoRA trains small low-rank matrices beside frozen weights. DoRA also learns a magnitude per output: "
     "slightly more memory, about 10-20% slower, sometimes better."),
    ("Adapter", "num_layers", "Layers to adapt", "int", (-1, 512),
     "Adapters go on the last N transformer blocks (-1: all). More layers: more capacity, more memory and time."),
    ("Adapter", "lora.rank", "Rank", "int", (1, 512),
     "Size of the adapter matrices. Higher rank learns more; memory and adapter size grow linearly."),
    ("Adapter", "lora.scale", "Scale (alpha / rank)", "float", (0.01, 1000.0, 2),
     "mlx-lm's 'scale': how strongly the adapter acts (PEFT's alpha divided by rank). No memory or time cost."),
    ("Adapter", "lora.dropout", "Dropout", "float", (0.0, 0.9, 2),
     "Randomly drops adapter inputs while training, against over-fitting small data. Free."),
    ("Adapter", "lora.keys", "Target layers", "text", "all linear layers",
     "Comma-separated layer names inside a block, e.g. self_attn.q_proj, self_attn.v_proj. Empty: every linear "
     "layer (mlx-lm's default). Fewer targets: less memory and time."),
    ("Batches", "batch_size", "Batch size", "int", (1, 1024),
     "Rows per micro-batch. Activation memory grows with it; larger batches use the hardware better."),
    ("Batches", "grad_accumulation_steps", "Gradient accumulation", "int", (1, 1024),
     "Micro-batches per optimizer step: a larger effective batch at no extra memory, more time per step."),
    ("Batches", "max_seq_length", "Max sequence length", "int", (16, 131072),
     "Rows longer than this are truncated (the report counts them). Memory grows with the longest row in a batch."),
    ("Duration", "epochs", "Epochs", "int", (1, 1000), "Passes over the training data. Time grows linearly."),
    ("Duration", "iters", "Step budget", "int", (0, 10_000_000),
     "Train for exactly this many optimizer steps instead of epochs (0: use epochs). A step is one optimizer "
     "update; mlx-lm counts micro-batches instead."),
    ("Optimizer", "learning_rate", "Learning rate", "sci", None,
     "Peak learning rate, e.g. 1e-4. Too high diverges (the run stops with a message); too low learns slowly."),
    ("Optimizer", "optimizer", "Optimizer", "choice", ["adamw", "adam", "sgd"],
     "AdamW (default) and Adam keep two moments per adapter weight; SGD keeps none and needs a higher rate."),
    ("Optimizer", "warmup_steps", "Warmup steps", "int", (-1, 1_000_000),
     "Linear warmup before cosine decay. -1: 5% of all steps."),
    ("Optimizer", "grad_clip", "Gradient clipping", "float", (0.0, 1000.0, 2),
     "Clips the gradient's global norm; 0 turns it off. Guards against spikes. Free."),
    ("Evaluation", "steps_per_report", "Report every", "int", (1, 100000), "Steps between loss reports."),
    ("Evaluation", "steps_per_eval", "Validate every", "int", (1, 1000000),
     "Steps between validations. Each one costs about the time of val batches x one forward pass."),
    ("Evaluation", "val_batches", "Validation batches", "int", (-1, 1000000),
     "Batches per validation (-1: the whole validation set). More: steadier curve, more time."),
    ("Evaluation", "test", "Test at the end", "bool", None, "Evaluate on test.jsonl once training ends."),
    ("Evaluation", "test_batches", "Test batches", "int", (-1, 1000000), "Batches for the test (-1: all of it)."),
    ("Checkpoints", "save_every", "Save every", "int", (1, 1000000),
     "Steps between checkpoints. Each holds the adapter and optimizer state (a few MB); Stop also saves."),
    ("Checkpoints", "keep_last", "Keep last", "int", (1, 1000), "Checkpoints kept besides the best one."),
    ("Safety", "fast_quant", "Fast quantized base (CPU)", "bool", None,
     "On the CPU backend the frozen 4/8-bit base is computed as dequantize + BLAS matmul, many times faster than "
     "MLX's CPU quantized kernels, at about one layer's float weights of extra memory. Apple GPUs always keep "
     "MLX's kernels. Same results either way."),
    ("Safety", "seed", "Seed", "int", (0, 2**31 - 1),
     "Fixes the split, the data order, adapter initialisation and dropout: one seed, one result."),
    ("Safety", "max_bad_steps", "Stop after bad steps", "int", (1, 1000),
     "A NaN/inf loss is skipped with a warning; after this many in a row the run stops."),
    ("Safety", "memory_limit_gb", "MLX memory limit (GB)", "float", (0.0, 4096.0, 1),
     "Caps MLX's memory (0: no cap). Over the cap MLX waits or fails rather than swapping the machine."),
    ("Safety", "ram_warn_share", "Warn above share of RAM", "float", (0.1, 1.0, 2),
     "A warning appears in the log when memory use passes this share of the machine's RAM."),
    ("Safety", "clear_cache_gb", "Clear MLX cache above (GB)", "float", (0.0, 4096.0, 1),
     "MLX keeps freed buffers for reuse; above this size they are released. Lower: less memory, a little slower."),
]


LEFT_GROUPS = ("Adapter", "Batches", "Duration")

# What a spin box shows at its minimum, where that value means "automatic" or "none".
SPECIAL_VALUES = {"num_layers": "all", "iters": "off (use epochs)", "warmup_steps": "auto (5%)",
                  "val_batches": "all", "test_batches": "all", "memory_limit_gb": "none",
                  "clear_cache_gb": "always"}


class SettingsPanel(QWidget):
    changed = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self._widgets: dict[str, QWidget] = {}
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
                    raise ConfigError(f"learning rate '{w.text()}' is not a number; write it like 1e-4") from None
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
        """The config, or None with the reason shown under the form."""
        try:
            cfg = self.config()
            if not cfg.learning_rate > 0:
                raise ConfigError("learning rate must be above 0")
        except ConfigError as e:
            self.error.setText(str(e))
            return None
        self.error.setText("")
        return cfg

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
