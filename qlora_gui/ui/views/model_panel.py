"""The model panel: models found on this machine, the demo model, Browse, and download."""

from __future__ import annotations

import html
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ...core.config import SETTING_BY_KEY
from ...core.errors import ModelError
from ...core.model.demo_model import demo_model_dir, ensure_demo_model
from ...core.model.model_files import check_model_files
from ...core.model.model_scan import ModelInfo, describe_model, format_bytes, format_count, scan_models
from ...core.runs.pending_run import PendingRun
from ..dialogs.download_dialog import DownloadDialog
from ..workers.jobs import start_job

DEMO_LABEL = "Demo model (tiny, random weights)"
PATH_ROLE = Qt.ItemDataRole.UserRole
# (header, tooltip) of each column of the model table
COLUMNS = (
    ("Model", "The model folder's name"),
    ("Architecture", "The model family, as its config.json names it"),
    ("Parameters", "Weights in the model, counted from its files"),
    ("Weights", "How the weights are stored: quantized (bits, group size) or a float type"),
    ("Size", "Space on disk"),
    (
        "Found in",
        "Where it was found: the Hugging Face cache, LM Studio's folders, a folder you added or "
        "browsed to, or built here (the demo)",
    ),
)
QUANTIZE = SETTING_BY_KEY["quantize_bits"]
QUANT_BITS = (None, *QUANTIZE.choices)  # the base-weights choices, in the combo box's order
QUANT_CHOICES = (
    "Keep as it is",
    *(f"Quantize to {b} bits on load" + (" (QLoRA)" if b == 4 else "") for b in QUANTIZE.choices),
)
BITS_PER_WEIGHT = {4: 4.5, 8: 8.5}  # with a float16 scale and bias per group of 64


def quantize_tooltips(info: ModelInfo | None) -> list[str]:
    """What each base-weights choice means, in memory for this model when one is picked."""
    n = info.parameters if info else 0

    def weights(bits: float, fallback: str) -> str:
        return f"about {format_bytes(int(n * bits / 8))} of weights" if n else fallback

    stored = f" ({info.quantization}, {format_bytes(info.size_bytes)} on disk)" if info else ""
    return [
        f"Train on the weights as they are stored{stored}.",
        f"Quantize the frozen base to 4 bits when loading: {weights(BITS_PER_WEIGHT[4], 'about 1/4 of 16-bit')} "
        f"instead of {weights(16, 'its 16-bit size')}. The adapter trains in full precision; quality stays close.",
        f"Quantize the frozen base to 8 bits when loading: {weights(BITS_PER_WEIGHT[8], 'about 1/2 of 16-bit')}; "
        "closer to the original than 4 bits.",
    ]


class ModelPanel(QWidget):
    model_changed = Signal()

    def __init__(self, extra_folders: list[str] | None = None, pending: PendingRun | None = None, parent=None):
        super().__init__(parent)
        # The run being prepared: this tab sets its model and how it is quantized (no model while one is built).
        self.pending = pending or PendingRun()
        self.model_changed.connect(self._publish)  # first: whoever else hears `model_changed` finds it set
        self.extra_folders = list(extra_folders or [])
        self.selected: ModelInfo | None = None
        self.problem = ""  # what is wrong with the selected model's files, if anything
        self.busy = False
        self.models = QTreeWidget()
        self.models.setRootIsDecorated(False)
        self.models.setHeaderLabels([name for name, _ in COLUMNS])
        for col, (_, tip) in enumerate(COLUMNS):
            self.models.headerItem().setToolTip(col, tip)
        self.models.currentItemChanged.connect(self._on_select)
        self.info = QLabel(
            "Pick a model. Models in the Hugging Face cache, LM Studio's folders and folders you add are listed."
        )
        self.info.setWordWrap(True)
        self.quantize = QComboBox()
        self.quantize.addItems(list(QUANT_CHOICES))
        self._describe_quant_choices(None)
        self.quantize.currentIndexChanged.connect(
            lambda i: self.quantize.setToolTip(self.quantize.itemData(i, Qt.ItemDataRole.ToolTipRole))
        )
        self.group_size = QComboBox()
        group = SETTING_BY_KEY["quantize_group_size"]
        self.group_size.addItems([str(c) for c in group.choices])
        self.group_size.setCurrentText(str(group.default))
        self.group_size.setToolTip(group.help)
        self.quantize.currentIndexChanged.connect(self.model_changed)
        self.group_size.currentIndexChanged.connect(self.model_changed)

        browse = QPushButton("Browse…")
        browse.clicked.connect(self.browse)
        add = QPushButton("Add folder…")
        add.setToolTip("Add a folder whose subfolders hold models; it is scanned every time.")
        add.clicked.connect(self._add_folder)
        rescan = QPushButton("Rescan")
        rescan.clicked.connect(self.rescan)
        download = QPushButton("Download from Hugging Face…")
        download.clicked.connect(self._download)
        buttons = QHBoxLayout()
        for b in (browse, add, rescan, download):
            buttons.addWidget(b)
        buttons.addStretch(1)
        quant = QHBoxLayout()
        quant.addWidget(QLabel("Base weights:"))
        quant.addWidget(self.quantize, 1)
        quant.addWidget(QLabel("group size:"))
        quant.addWidget(self.group_size)
        layout = QVBoxLayout(self)
        layout.addLayout(buttons)
        layout.addWidget(self.models, 1)
        layout.addWidget(self.info)
        layout.addLayout(quant)
        self.rescan()

    # ------------------------------------------------------------ listing

    def rescan(self) -> None:
        start_job(scan_models, list(self.extra_folders), on_done=self._fill)

    def _fill(self, found: list[ModelInfo]) -> None:
        current = self.selected_path
        self.models.blockSignals(True)
        self.models.clear()
        demo = QTreeWidgetItem([DEMO_LABEL, "llama", "", "float32", "", "built here when picked"])
        demo.setData(0, PATH_ROLE, "demo")
        demo.setToolTip(
            0,
            "Built on this machine in a few seconds. It learns, but it knows nothing: for trying the "
            "app, not for real use.",
        )
        self.models.addTopLevelItem(demo)
        demo_dir = demo_model_dir().resolve()
        for info in found:
            if Path(info.path).resolve() != demo_dir:  # the demo has its own row
                self._add_item(info)
        for col in range(len(COLUMNS) - 1):  # before the hint row, which spans the columns
            self.models.resizeColumnToContents(col)
        if not found:
            hint = QTreeWidgetItem(
                [
                    "No other models found in the Hugging Face cache or LM Studio's folders. Use "
                    "Browse for a model folder, Add folder for a folder of models, or download one."
                ]
            )
            hint.setFlags(Qt.ItemFlag.NoItemFlags)
            self.models.addTopLevelItem(hint)
            hint.setFirstColumnSpanned(True)
        self.models.blockSignals(False)
        if current:
            self.select_path(current, emit=False)

    def rows(self) -> list[QTreeWidgetItem]:
        return [self.models.topLevelItem(i) for i in range(self.models.topLevelItemCount())]

    @staticmethod
    def _cells(info: ModelInfo) -> list[str]:
        return [
            info.name,
            info.architecture,
            format_count(info.parameters),
            info.quantization,
            format_bytes(info.size_bytes),
            f"{info.source}: {info.path}",
        ]

    def _add_item(self, info: ModelInfo) -> QTreeWidgetItem:
        item = QTreeWidgetItem(self._cells(info))
        item.setData(0, PATH_ROLE, str(info.path))
        item.setToolTip(5, str(info.path))
        self.models.addTopLevelItem(item)
        self._fit_columns()
        return item

    def _fit_columns(self) -> None:
        """The figures' columns to their contents (the name column is sized once per scan, before a hint row
        that spans the table could widen it)."""
        for col in range(1, len(COLUMNS) - 1):
            self.models.resizeColumnToContents(col)

    def _describe_quant_choices(self, info: ModelInfo | None) -> None:
        tips = quantize_tooltips(info)
        for index, tip in enumerate(tips):
            self.quantize.setItemData(index, tip, Qt.ItemDataRole.ToolTipRole)
        self.quantize.setToolTip(tips[self.quantize.currentIndex()])

    # ------------------------------------------------------------ selection

    def _publish(self) -> None:
        model = "" if self.busy else self.selected_path or ""
        self.pending.update(model=model, quantize_bits=self.quantize_bits, quantize_group_size=self.group)

    @property
    def selected_path(self) -> str | None:
        return str(self.selected.path) if self.selected else None

    @property
    def quantize_bits(self) -> int | None:
        return QUANT_BITS[self.quantize.currentIndex()]

    @property
    def group(self) -> int:
        return int(self.group_size.currentText())

    def select_path(self, path: str, emit: bool = True) -> bool:
        is_demo = Path(path).resolve() == demo_model_dir().resolve()
        info = describe_model(Path(path), "demo" if is_demo else "added folder", DEMO_LABEL if is_demo else None)
        if info is None:
            self.info.setText(f"<b>{path}</b> is not a model folder (it needs config.json and *.safetensors).")
            return False
        key = "demo" if is_demo else str(info.path)
        match = next((item for item in self.rows() if item.data(0, PATH_ROLE) == key), None)
        self.models.blockSignals(True)
        self.models.setCurrentItem(match or self._add_item(info))  # a browsed folder joins the list
        self.models.blockSignals(False)
        self._set_selected(info, emit)
        return True

    def _set_selected(self, info: ModelInfo | None, emit: bool = True) -> None:
        self.selected = info
        self.problem = ""
        if info:
            try:
                check_model_files(Path(info.path))  # headers only: cheap on the GUI thread
            except ModelError as e:
                self.problem = str(e)
            self.info.setText(
                f"<b>{info.name}</b> · {info.architecture} · {info.parameters:,} parameters · "
                f"{info.quantization} · {format_bytes(info.size_bytes)} on disk<br>{info.path}"
                + (f"<br><span style='color:#c0392b'>⚠ {html.escape(self.problem)}</span>" if self.problem else "")
            )
            self._describe_quant_choices(info)
            if self.models.currentItem() is not None and self.models.currentItem().data(0, PATH_ROLE) == "demo":
                for col, text in enumerate(self._cells(info)[1:], start=1):
                    self.models.currentItem().setText(col, text)
                self._fit_columns()
            quantized = "bit" in info.quantization
            self.quantize.setEnabled(not quantized)
            self.group_size.setEnabled(not quantized)
            if quantized:
                self.quantize.setCurrentIndex(0)
        if emit:
            self.model_changed.emit()

    def _on_select(self, item: QTreeWidgetItem | None, _previous=None) -> None:
        if item is None:
            return
        path = item.data(0, PATH_ROLE)
        if path == "demo":
            self.busy = True
            self.info.setText("Building the demo model…")
            self.model_changed.emit()
            start_job(ensure_demo_model, demo_model_dir(), on_done=self._demo_ready, on_failed=self._demo_failed)
            return
        self._set_selected(describe_model(Path(path), "listed"))

    def use_demo(self) -> None:
        """Pick the demo model (built here the first time), as clicking its row does."""
        if self.busy:
            return
        demo = next((row for row in self.rows() if row.data(0, PATH_ROLE) == "demo"), None)
        if demo is not None and self.models.currentItem() is not demo:
            self.models.setCurrentItem(demo)  # selects it: _on_select builds or finds it
        else:
            self.busy = True
            self.info.setText("Building the demo model…")
            self.model_changed.emit()
            start_job(ensure_demo_model, demo_model_dir(), on_done=self._demo_ready, on_failed=self._demo_failed)

    def _demo_ready(self, path: str) -> None:
        self.busy = False
        self._set_selected(describe_model(Path(path), "demo", DEMO_LABEL))

    def _demo_failed(self, message: str, details: str) -> None:
        self.busy = False
        self.info.setText(f"Could not build the demo model: {message}")
        self.model_changed.emit()

    def browse(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Model folder (config.json and *.safetensors)")
        if path:
            self.select_path(path)

    def _add_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Folder with models")
        if path and path not in self.extra_folders:
            self.extra_folders.append(path)
            self.rescan()

    def _download(self) -> None:
        dialog = DownloadDialog(self)
        dialog.downloaded.connect(lambda p: (self.rescan(), self.select_path(p)))
        dialog.exec()
