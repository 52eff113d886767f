"""Fuse & export: a run's model as an MLX folder, a GGUF file or an adapter; sent to LM Studio or Ollama."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
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
    QVBoxLayout,
    QWidget,
)

from ...core.after import export as exporting
from ...core.after.destinations import lmstudio_models_dir
from ...core.after.fuse import gguf_support
from ...core.after.gguf_export import GGUF_TYPES
from ...core.after.staging import refuse_existing
from ...core.errors import UserError
from ...core.inference.adapters import base_as_trained, checkpoint_choices, read_adapter
from ...core.runs.run_folder import checkpoint_step
from ...core.runs.run_plan import unused_path
from ..desktop import open_folder
from ..widgets.elided_label import ElidedLabel
from ..workers.jobs import start_job


def _row(*widgets: tuple[QWidget, int]) -> QWidget:
    row = QWidget()
    layout = QHBoxLayout(row)
    layout.setContentsMargins(0, 0, 0, 0)
    for widget, stretch in widgets:
        layout.addWidget(widget, stretch)
    return row


class ExportDialog(QDialog):
    """Pick a checkpoint, a format and where it goes; the folder opens in the file manager when done."""

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
        self.result_path: Path | None = None  # the exported folder, once written
        self.result = None
        self._quantized = False
        self._gguf_reason: str | None = None

        self.checkpoint = QComboBox()
        choices, default = checkpoint_choices(self.run_dir)
        for label, path in choices:
            self.checkpoint.addItem(label, path)
        if default:
            self.checkpoint.setCurrentIndex(self.checkpoint.findData(default))
        self.format = QComboBox()
        for key, label in exporting.FORMATS.items():
            self.format.addItem(label, key)
        self.gguf_type = QComboBox()
        self.mlx_weights = QComboBox()
        # The parent folder is shown cut in the middle (both ends stay readable); the name is editable.
        self.parent_dir = self.exports_root
        self.parent_label = ElidedLabel()
        self.name = QLineEdit()
        self.name.setToolTip(
            "The new folder's name, inside the folder shown on the left; a path such as exports/today/model or "
            "~/Models/mine is created as it is, folders that do not exist yet included"
        )
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        folder_row = _row((self.parent_label, 3), (QLabel("/"), 0), (self.name, 2), (browse, 0))

        self.lmstudio_dir = lmstudio_models_dir()
        self.lmstudio = QCheckBox("Send to LM Studio")
        self.lmstudio.toggled.connect(self._ask_lmstudio_folder)
        self.ollama = QCheckBox("Ollama Modelfile, as model")
        self.ollama_name = QLineEdit(self.run_dir.name.lower().replace(" ", "-"))
        ollama_row = _row((self.ollama, 0), (self.ollama_name, 1))
        self.hub = QCheckBox("Publish to the Hugging Face Hub as")
        self.hub_repo = QLineEdit()
        self.hub_repo.setPlaceholderText("USER/NAME")
        self.hub_public = QCheckBox("public")
        self.hub_public.setToolTip("Private unless ticked; the token is the one `hf auth login` left")
        hub_row = _row((self.hub, 0), (self.hub_repo, 1), (self.hub_public, 0))
        self.base_note = QLabel("")
        self.estimate = QLabel("")
        self.estimate.setWordWrap(True)

        self.bar = QProgressBar()
        self.bar.setRange(0, 1000)
        self.bar.hide()
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)  # commands to copy
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        self.export_button = self.buttons.addButton("Export", QDialogButtonBox.ButtonRole.AcceptRole)
        self.export_button.clicked.connect(self.start)
        self.buttons.rejected.connect(self.reject)
        self.progressed.connect(self._on_progress)

        form = QFormLayout()
        form.addRow("Checkpoint", self.checkpoint)
        form.addRow("Format", self.format)
        form.addRow("GGUF type", self.gguf_type)
        form.addRow("MLX weights", self.mlx_weights)
        form.addRow("Save to", folder_row)
        form.addRow("Also", self.lmstudio)
        form.addRow("", ollama_row)
        form.addRow("", hub_row)
        self.form = form
        layout = QVBoxLayout(self)
        layout.addWidget(self.base_note)
        layout.addLayout(form)
        layout.addWidget(self.estimate)
        layout.addWidget(self.bar)
        layout.addWidget(self.status)
        layout.addWidget(self.buttons)
        self.resize(680, 380)
        self._describe_base()
        for box in (self.checkpoint, self.format, self.gguf_type, self.mlx_weights):
            box.currentIndexChanged.connect(self._refresh)
        self._refresh()

    def _describe_base(self) -> None:
        path = self.checkpoint.currentData()
        if not path:
            self.export_button.setEnabled(False)
            self.status.setText("This run has no checkpoint yet.")
            return
        try:
            base_path, base, quant = base_as_trained(read_adapter(path))
        except Exception as e:  # a moved or deleted base model: say so, exporting cannot work
            self.export_button.setEnabled(False)
            self.status.setText(f"Cannot export: {e}")
            return
        self._quantized = bool(quant)
        self.base_note.setText(
            f"Base: {base_path.name} ({base.get('model_type', '?')}), "
            + (f"{quant.get('bits')}-bit" if quant else "not quantized")
        )
        self._gguf_reason = gguf_support(str(base.get("model_type", "")))
        for key, (label, _deq, _bits) in exporting.MLX_WEIGHTS.items():
            if key != "dequantize" or self._quantized:
                self.mlx_weights.addItem(label, key)

    def _adapter(self):
        return read_adapter(self.checkpoint.currentData())

    def _refresh(self) -> None:
        fmt = self.format.currentData()
        self.form.setRowVisible(self.gguf_type, fmt == "gguf")
        self.form.setRowVisible(self.mlx_weights, fmt == "mlx")
        self.ollama.setEnabled(fmt != "mlx")
        if fmt == "mlx":
            self.ollama.setChecked(False)
        self.ollama.setToolTip("" if fmt != "mlx" else "Ollama does not load MLX folders; choose a GGUF format")
        needs_gguf = fmt in ("gguf", "adapter-gguf") and self._gguf_reason
        self.export_button.setEnabled(bool(self.checkpoint.currentData()) and not needs_gguf)
        if not self.checkpoint.currentData():
            return
        adapter = self._adapter()
        if self.gguf_type.count() == 0:
            for key, label, note, available in exporting.gguf_choices():
                size = exporting.human_size(exporting.estimate_bytes(adapter, "gguf", key))
                self.gguf_type.addItem(f"{label} — about {size}" + ("" if available else " (needs llama.cpp)"), key)
                self.gguf_type.setItemData(self.gguf_type.count() - 1, note, Qt.ItemDataRole.ToolTipRole)
                self.gguf_type.model().item(self.gguf_type.count() - 1).setEnabled(available)
            self.gguf_type.setCurrentIndex(self.gguf_type.findData("q8_0"))
        bits = exporting.MLX_WEIGHTS[self.mlx_weights.currentData() or "keep"][2]
        key = self.gguf_type.currentData() or "q8_0"
        note = f" {GGUF_TYPES[key].note}." if fmt == "gguf" and key in GGUF_TYPES else ""
        self.estimate.setText(
            f"⚠ {self._gguf_reason}" if needs_gguf else exporting.estimate_text(adapter, fmt, key, bits) + note
        )
        self._suggest_folder()

    def _ask_lmstudio_folder(self, on: bool) -> None:
        if on and self.lmstudio_dir is None:
            folder = QFileDialog.getExistingDirectory(self, "LM Studio's models folder (see My Models in LM Studio)")
            if not folder:
                self.lmstudio.setChecked(False)
                return
            self.lmstudio_dir = Path(folder)
        self.lmstudio.setToolTip(f"into {self.lmstudio_dir}/qlora-studio/NAME/" if self.lmstudio_dir else "")

    def _suggest_folder(self) -> None:
        self._set_target(unused_path(self.parent_dir / self._suggested_name()))

    def _suggested_name(self) -> str:
        path = self.checkpoint.currentData()
        step = checkpoint_step(path) if path else None
        return f"{self.run_dir.name}-step{step or 0}-{exporting.FOLDER_SUFFIX[self.format.currentData()]}"

    def _set_target(self, path: Path) -> None:
        self.parent_dir = path.parent
        self.parent_label.set_full_text(str(path.parent))
        self.name.setText(path.name)

    def target(self) -> Path:
        """Where the export will be written: the name inside the parent folder, or a whole path if one was typed."""
        typed = Path(self.name.text().strip()).expanduser()
        return typed if typed.is_absolute() else self.parent_dir / typed

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Parent folder for the export", str(self.parent_dir))
        if folder:
            name = self.name.text().strip() or self._suggested_name()
            self._set_target(unused_path(Path(folder) / name))

    def request(self) -> exporting.ExportRequest:
        _label, dequantize, bits = exporting.MLX_WEIGHTS[self.mlx_weights.currentData() or "keep"]
        fmt = self.format.currentData()
        return exporting.ExportRequest(
            adapter=self._adapter(),
            format=fmt,
            out=self.target(),
            gguf_type=self.gguf_type.currentData() or "q8_0",
            bits=bits if fmt == "mlx" else None,
            dequantize=dequantize and fmt == "mlx",
            lmstudio=self.lmstudio.isChecked(),
            lmstudio_dir=self.lmstudio_dir,
            ollama_name=self.ollama_name.text().strip() if self.ollama.isChecked() else None,
            hub_repo=self.hub_repo.text().strip() if self.hub.isChecked() else None,
            hub_public=self.hub_public.isChecked(),
        )

    def start(self) -> None:
        if not self.name.text().strip() or ".." in Path(self.name.text().strip()).parts:
            self.status.setText("⚠ Give the new folder a name (or a path without ..); Browse… picks where it goes.")
            return
        try:  # an empty folder made beforehand is fine, as in the core; missing folders on the way are created
            refuse_existing(self.target())
        except UserError as e:
            self.status.setText(f"⚠ {e}.")
            return
        if self.ollama.isChecked() and not self.ollama_name.text().strip():
            self.status.setText("⚠ Give the Ollama model a name.")
            return
        if self.hub.isChecked() and "/" not in self.hub_repo.text().strip():
            self.status.setText("⚠ Give the Hub repository as USER/NAME.")
            return
        try:
            req = self.request()
        except UserError as e:  # the checkpoint went since the dialog opened (pruned, deleted)
            self.status.setText(f"⚠ {e}")
            return
        self.export_button.setEnabled(False)
        self.bar.show()
        self.bar.setValue(0)
        self.status.setText("Starting…")
        self.job = start_job(
            partial(exporting.export, req, self.progressed.emit), on_done=self._done, on_failed=self._failed
        )

    def _on_progress(self, fraction: float, message: str) -> None:
        self.bar.setValue(int(1000 * fraction))
        self.status.setText(message)

    def _done(self, result) -> None:
        self.job = None
        self.result = result
        self.result_path = result.path
        files = ", ".join(f.name for f in result.files[:4])
        lines = [f"Saved {result.path} ({exporting.human_size(result.size_bytes)}: {files})."]
        if result.lmstudio:
            lines.append(f"LM Studio: {result.lmstudio}")
        lines += result.notes
        self.status.setText("\n".join(lines))
        self.bar.setValue(1000)
        self.exported.emit(str(result.path))
        if self.open_when_done:
            open_folder(result.path, self)

    def _failed(self, message: str, details: str) -> None:
        self.job = None
        self.bar.hide()
        self.status.setText(f"⚠ {message}")
        self.export_button.setEnabled(True)
        self.failed.emit(message)

    def reject(self) -> None:
        if self.job is not None:  # an export is writing: closing now would leave the job without its window
            self.status.setText("Exporting… the window closes when it is done.")
            self.job.finished.connect(super().reject)
            return
        super().reject()
