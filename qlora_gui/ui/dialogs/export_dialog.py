"""Fuse & export: merge a run's adapter into its base as a new model folder, optionally with GGUF."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QRadioButton,
    QVBoxLayout,
    QWidget,
)

from ...core.after.fuse import fuse_adapter, gguf_support
from ...core.after.inference import base_as_trained, checkpoint_choices, read_adapter
from ...core.errors import UserError
from ...core.runs.run_folder import checkpoint_step
from ...core.runs.run_plan import unused_path
from ..desktop import open_folder
from ..widgets.elided_label import ElidedLabel
from ..workers.jobs import start_job


class ExportDialog(QDialog):
    """Pick a checkpoint, a folder and the options; the fused folder opens in the file manager when done."""

    progressed = Signal(float, str)
    exported = Signal(str)
    failed = Signal(str)

    def __init__(self, run_dir: Path, exports_root: Path, parent=None):
        super().__init__(parent)
        self.setWindowTitle(f"Fuse & export — {Path(run_dir).name}")
        self.run_dir = Path(run_dir)
        self.exports_root = Path(exports_root)
        self.open_when_done = True
        self.job = None
        self.result_path: Path | None = None  # the fused folder, once written
        self._quantized = False

        self.checkpoint = QComboBox()
        choices, default = checkpoint_choices(self.run_dir)
        for label, path in choices:
            self.checkpoint.addItem(label, path)
        if default:
            self.checkpoint.setCurrentIndex(self.checkpoint.findData(default))
        self.checkpoint.currentIndexChanged.connect(self._suggest_folder)
        # The parent folder is shown cut in the middle (both ends stay readable); the name is editable.
        self.parent_dir = self.exports_root
        self.parent_label = ElidedLabel()
        self.name = QLineEdit()
        self.name.setToolTip("The new folder's name, inside the folder shown on the left")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        folder_row = QWidget()
        row = QHBoxLayout(folder_row)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.parent_label, 3)
        row.addWidget(QLabel("/"))
        row.addWidget(self.name, 2)
        row.addWidget(browse)

        self.keep = QRadioButton("Keep the base's quantization (small; one extra rounding of the weights)")
        self.dequantize = QRadioButton("De-quantize to 16-bit (exactly base + adapter; larger)")
        group = QButtonGroup(self)
        group.addButton(self.keep)
        group.addButton(self.dequantize)
        self.keep.setChecked(True)
        self.gguf = QCheckBox("Also export GGUF (for llama.cpp, LM Studio, Ollama)")
        self.gguf_note = QLabel("")
        self.gguf_note.setWordWrap(True)
        self.gguf.toggled.connect(self._gguf_toggled)
        self.quant_note = QLabel("")

        self.bar = QProgressBar()
        self.bar.setRange(0, 1000)
        self.bar.hide()
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        self.fuse_button = self.buttons.addButton("Fuse", QDialogButtonBox.ButtonRole.AcceptRole)
        self.fuse_button.clicked.connect(self.start)
        self.buttons.rejected.connect(self.reject)
        self.progressed.connect(self._on_progress)

        form = QFormLayout()
        form.addRow("Checkpoint", self.checkpoint)
        form.addRow("Save to", folder_row)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.quant_note)
        layout.addWidget(self.keep)
        layout.addWidget(self.dequantize)
        layout.addWidget(self.gguf)
        layout.addWidget(self.gguf_note)
        layout.addWidget(self.bar)
        layout.addWidget(self.status)
        layout.addWidget(self.buttons)
        self.resize(620, 320)
        self._describe_base()
        self._suggest_folder()

    def _describe_base(self) -> None:
        path = self.checkpoint.currentData()
        if not path:
            self.fuse_button.setEnabled(False)
            self.status.setText("This run has no checkpoint yet.")
            return
        try:
            base_path, base, quant = base_as_trained(read_adapter(path))
        except Exception as e:  # a moved or deleted base model: say so, fusing cannot work
            self.fuse_button.setEnabled(False)
            self.status.setText(f"Cannot fuse: {e}")
            return
        self.quant_note.setText(
            f"Base: {base_path.name}, "
            + (f"{quant.get('bits')}-bit" if quant else "not quantized (fused at full precision)")
        )
        self._quantized = bool(quant)
        for choice in (self.keep, self.dequantize):  # only a quantized base has a choice to make
            choice.setEnabled(self._quantized)
            choice.setVisible(self._quantized)
        reason = gguf_support(str(base.get("model_type", "")))
        self.gguf.setEnabled(reason is None)
        self.gguf_note.setText(reason or "")

    def _gguf_toggled(self, on: bool) -> None:
        if not self._quantized:
            return
        if on:  # mlx-lm writes GGUF from 16-bit weights only
            self.dequantize.setChecked(True)
        self.keep.setEnabled(not on)
        self.gguf_note.setText(
            "GGUF is written from 16-bit weights, so the fused folder is de-quantized too." if on else ""
        )

    def _suggest_folder(self) -> None:
        self._set_target(unused_path(self.parent_dir / self._suggested_name()))

    def _suggested_name(self) -> str:
        path = self.checkpoint.currentData()
        step = checkpoint_step(path) if path else None
        return f"{self.run_dir.name}-step{step or 0}-fused"

    def _set_target(self, path: Path) -> None:
        self.parent_dir = path.parent
        self.parent_label.set_full_text(str(path.parent))
        self.name.setText(path.name)

    def target(self) -> Path:
        """Where the fused model will be written."""
        return self.parent_dir / self.name.text().strip()

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Parent folder for the fused model", str(self.parent_dir))
        if folder:
            name = self.name.text().strip() or self._suggested_name()
            self._set_target(unused_path(Path(folder) / name))

    def start(self) -> None:
        name = self.name.text().strip()
        if not name or Path(name).name != name:
            self.status.setText("⚠ Give the new folder a name (no slashes); Browse… picks where it goes.")
            return
        if self.target().exists():
            self.status.setText(f"⚠ {self.target()} already exists: pick another name, so nothing is overwritten.")
            return
        try:
            adapter = read_adapter(self.checkpoint.currentData())
        except UserError as e:  # the checkpoint went since the dialog opened (pruned, deleted)
            self.status.setText(f"⚠ {e}")
            return
        self.fuse_button.setEnabled(False)
        self.bar.show()
        self.bar.setValue(0)
        self.status.setText("Starting…")
        fuse = partial(
            fuse_adapter,
            adapter,
            str(self.target()),
            dequantize=self.dequantize.isChecked(),
            export_gguf=self.gguf.isChecked(),
            progress=self.progressed.emit,
        )
        self.job = start_job(fuse, on_done=self._done, on_failed=self._failed)

    def _on_progress(self, fraction: float, message: str) -> None:
        self.bar.setValue(int(1000 * fraction))
        self.status.setText(message)

    def _done(self, result) -> None:
        self.job = None
        self.result_path = result.path
        quant = f"{result.quantization['bits']}-bit" if result.quantization else "16-bit / full precision"
        gguf = f"; GGUF: {result.gguf.name}" if result.gguf else ""
        self.status.setText(
            f"Saved {result.path} ({quant}, {result.size_bytes / 1e6:.1f} MB{gguf}). "
            "It loads with mlx_lm.load; see the README for LM Studio and Ollama."
        )
        self.bar.setValue(1000)
        self.exported.emit(str(result.path))
        if self.open_when_done:
            open_folder(result.path, self)

    def _failed(self, message: str, details: str) -> None:
        self.job = None
        self.bar.hide()
        self.status.setText(f"⚠ {message}")
        self.fuse_button.setEnabled(True)
        self.failed.emit(message)

    def reject(self) -> None:
        if self.job is not None:  # a fuse is writing: closing now would leave the job without its window
            self.status.setText("Fusing… the window closes when it is done.")
            self.job.finished.connect(super().reject)
            return
        super().reject()
