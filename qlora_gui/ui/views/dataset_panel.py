"""The dataset panel: pick or drop data, see the intake report, and every problem by file and line."""

from __future__ import annotations

import re
from functools import partial
from pathlib import Path

import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QTextCharFormat, QTextCursor
from PySide6.QtWidgets import (
    QFileDialog,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListWidget,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTextEdit,
    QVBoxLayout,
    QWidget,
)

from ...core.config import SETTING_BY_KEY
from ...core.data.dataset import DataReport
from ...core.data.formats import is_preference, is_prompts
from ...core.data.intake import RawSplit
from ...core.gc_policy import keep_long_lived
from ...core.resources import sample_data_path
from ...core.runs.pending_run import PendingRun
from ...core.train.preference_mode import mode_mismatch
from ..theme import style_plot
from ..widgets.setting_widgets import make_widget, show_value
from ..widgets.token_view_widget import TokenViewBox
from ..workers.data_jobs import CheckProgress, file_excerpt, run_check
from ..workers.jobs import start_job
from .data_summary import fill_preview, plot_lengths, summary_html

_PROBLEM = re.compile(r"^(?P<file>.+?):(?P<line>\d+): ")


CHECK_KEYS = frozenset({"model", "max_seq_length", "batch_size", "seed"})  # settings that change the check


class DatasetPanel(QWidget):
    report_changed = Signal()  # a new report (usable or not) is in `self.report`
    token_view_shown = Signal()  # the token view shows a new row (or says why it cannot)
    demo_model_requested = Signal()  # the first-run card's "Use the demo model"
    mode_requested = Signal(str)  # the user asks to train in this mode, where the Data tab shows the mismatch

    def __init__(self, pending: PendingRun | None = None, parent=None):
        super().__init__(parent)
        # The run being prepared: this tab sets its data; the model and the settings that change the check come
        # from the other tabs through it.
        self.pending = pending or PendingRun()
        self.pending.subscribe(self._on_pending_changed)
        self.report: DataReport | None = None
        self.raw: dict[str, RawSplit] = {}
        self._generation = 0
        self.checking = False

        self.path_edit = QLineEdit(placeholderText="Drop a .jsonl/.json file or a data folder here, or type its path")
        self.path_edit.editingFinished.connect(self._typed_path)  # Enter, or leaving the box
        self._checked_path = ""
        self._mask_cleared = False  # completions-only was turned off because the rows are plain text
        self.file_button = QPushButton("Browse file…")
        self.folder_button = QPushButton("Browse folder…")
        self.file_button.clicked.connect(self.browse_file)
        self.folder_button.clicked.connect(self.browse_folder)
        top = QHBoxLayout()
        top.addWidget(self.path_edit, 1)
        top.addWidget(self.file_button)
        top.addWidget(self.folder_button)

        share, mask = SETTING_BY_KEY["valid_fraction"], SETTING_BY_KEY["mask_prompt"]
        self.valid_share = make_widget(share, self.recheck)
        show_value(self.valid_share, share, share.default)
        self.mask_prompt = make_widget(mask, self.recheck)
        self.mask_prompt.setText(mask.label)
        show_value(self.mask_prompt, mask, True)  # each dataset starts with it on (set_path), so the box does too
        options = QHBoxLayout()
        options.addWidget(QLabel(f"{share.label}:"))
        options.addWidget(self.valid_share)
        options.addSpacing(16)
        options.addWidget(self.mask_prompt)
        options.addStretch(1)

        self.first_run = self._first_run_card()
        self.summary = QLabel("No dataset yet.")
        self.summary.setWordWrap(True)
        self.summary.setTextFormat(Qt.TextFormat.RichText)
        self.mode_button = QPushButton("Train with DPO")
        self.mode_button.setToolTip("Set Settings › Training mode to what these rows need")
        self.mode_button.clicked.connect(lambda: self.mode_requested.emit(self._needed_mode()))
        self.mode_button.hide()
        verdict = QHBoxLayout()
        verdict.addWidget(self.summary, 1)
        verdict.addWidget(self.mode_button, 0, Qt.AlignmentFlag.AlignTop)
        self.busy = QProgressBar(maximumHeight=6, textVisible=False)  # how far a check is
        self.busy.setRange(0, 0)  # moving while the data is checked off the GUI thread
        self.busy.hide()
        self._progress = CheckProgress(self)
        self._progress.moved.connect(self._on_progress)

        self.histogram = pg.PlotWidget(title="Row lengths")
        self.histogram.setMinimumHeight(160)
        self.histogram.setMenuEnabled(False)
        self.preview = QTableWidget(0, 0)
        self.preview.verticalHeader().setVisible(False)
        self.preview.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.preview.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.preview.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.preview.currentCellChanged.connect(lambda row, *_: self._preview_selected(row))

        self.token_box = TokenViewBox()
        self.token_view = self.token_box.view
        self.token_box.shown.connect(self.token_view_shown)

        self.problems = QListWidget()
        self.problems.setWordWrap(True)
        self.problems.currentRowChanged.connect(self._show_problem_line)
        self.line_view = QPlainTextEdit(readOnly=True)
        self.line_view.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.line_view.setPlaceholderText("Click a problem to see its line.")
        self.problem_box = QGroupBox("Problems")
        pbox = QVBoxLayout(self.problem_box)
        pbox.addWidget(self.problems, 2)
        pbox.addWidget(self.line_view, 1)

        split = QSplitter(Qt.Orientation.Vertical)
        upper = QSplitter(Qt.Orientation.Horizontal)
        upper.addWidget(self.histogram)
        upper.addWidget(self.problem_box)
        lower = QSplitter(Qt.Orientation.Horizontal)
        lower.addWidget(self.preview)
        lower.addWidget(self.token_box)
        lower.setSizes([520, 700])
        split.addWidget(upper)
        split.addWidget(lower)
        split.setSizes([170, 370])

        layout = QVBoxLayout(self)
        layout.addWidget(self.first_run)
        layout.addLayout(top)
        layout.addLayout(options)
        layout.addLayout(verdict)
        layout.addWidget(self.busy)
        layout.addWidget(split, 1)
        self._render(None)
        self._sync_first_run()

    def _first_run_card(self) -> QFrame:
        """For a first try: the sample data and the demo model, one click each; gone once both are chosen."""
        card = QFrame()
        card.setFrameShape(QFrame.Shape.StyledPanel)
        text = QLabel(
            "<b>New here?</b> Try the whole flow in a minute: load the sample dataset (240 SQL questions as "
            "prompt/completion rows) and use the demo model (tiny, built on this machine), then Start training."
        )
        text.setWordWrap(True)
        self.sample_button = QPushButton("Load the sample dataset")
        self.sample_button.setToolTip(str(sample_data_path()))
        self.sample_button.clicked.connect(lambda: self.set_path(sample_data_path()))
        self.demo_button = QPushButton("Use the demo model")
        self.demo_button.setToolTip("A tiny model with random weights: fast, to see how the app works")
        self.demo_button.clicked.connect(self.demo_model_requested)
        row = QHBoxLayout(card)
        row.addWidget(text, 1)
        row.addWidget(self.sample_button)
        row.addWidget(self.demo_button)
        return card

    def _sync_first_run(self) -> None:
        self.sample_button.setVisible(not self.path)
        self.demo_button.setVisible(not self.model_path)
        self.first_run.setVisible(not self.path or not self.model_path)

    # ------------------------------------------------------------ inputs

    @property
    def path(self) -> str:
        return self._checked_path

    def _typed_path(self) -> None:
        text = self.path_edit.text().strip().strip('"').strip("'")
        if text and text != self._checked_path:
            self.set_path(text)

    @property
    def progress(self) -> CheckProgress:
        """Where the check of the data stands, as its encoding moves."""
        return self._progress

    @property
    def usable(self) -> bool:
        return self.report is not None and self.report.usable and not self.checking

    def set_path(self, path: str | Path, mask_prompt: bool = True) -> None:
        """Check this dataset. Completions only is decided per dataset: on unless told (what the Hugging Face
        and Unsloth guides recommend for chat and prompt/completion rows); rows with no prompt turn it off for
        this dataset only."""
        self._checked_path = str(Path(path).expanduser())
        self._mask_cleared = False
        self.mask_prompt.blockSignals(True)  # one check below, not one more for the box
        self.mask_prompt.setEnabled(True)
        self.mask_prompt.setChecked(mask_prompt)
        self.mask_prompt.blockSignals(False)
        self.path_edit.setText(self._checked_path)
        self.valid_share.setEnabled(
            not Path(path).is_dir() or not any((Path(path) / f"valid{s}").is_file() for s in (".jsonl", ".json"))
        )
        self.recheck()

    # What the other tabs set that changes this one: the model (lengths in its tokens), the cut length, the batch
    # size and the seed that splits a single file as training will, and the mode the verdict is for.

    @property
    def model_path(self) -> str | None:
        return self.pending.config.model or None

    @property
    def max_seq_length(self) -> int:
        return self.pending.config.max_seq_length

    @property
    def batch_size(self) -> int:
        return self.pending.config.batch_size

    @property
    def seed(self) -> int:
        return self.pending.config.seed

    @property
    def train_mode(self) -> str:
        return self.pending.config.train_mode

    def _on_pending_changed(self, keys: set[str]) -> None:
        if keys & CHECK_KEYS:
            self.recheck()
        elif "train_mode" in keys and self.report is not None and not self.checking:
            self._render(self.report)  # pairs with SFT, or plain rows with DPO/ORPO, are not ready

    def _needed_mode(self) -> str:
        """The mode these rows train in: GRPO for prompts, DPO for pairs (from SFT), else SFT."""
        rows = self.report.format if self.report is not None else None
        if is_prompts(rows):
            return "grpo"
        return "dpo" if is_preference(rows) else "sft"

    def browse_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open dataset", "", "Data (*.jsonl *.json);;All files (*)")
        if path:
            self.set_path(path)

    def browse_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open data folder (train.jsonl, valid.jsonl, test.jsonl)")
        if path:
            self.set_path(path)

    # ------------------------------------------------------------ checking

    def recheck(self) -> None:
        self.pending.update(
            data=self.path, mask_prompt=self.mask_prompt.isChecked(), valid_fraction=self.valid_share.value()
        )
        self._sync_first_run()
        if not self.path:
            return
        self._generation += 1
        generation = self._generation
        self.checking = True
        self.busy.show()
        self.summary.setText(f"Checking <b>{self.path}</b>…")
        self.report_changed.emit()
        check = partial(
            run_check,
            self.path,
            self.model_path,
            max_seq_length=self.max_seq_length,
            mask_prompt=self.mask_prompt.isChecked(),
            batch_size=self.batch_size,
            valid_fraction=self.valid_share.value(),
            seed=self.seed,
            on_progress=self._progress.reporter(generation, lambda: self._generation),
        )
        self.busy.setRange(0, 0)  # moving until the first progress report
        done = lambda result: self._on_report(generation, *result)  # noqa: E731
        start_job(check, on_done=done, on_failed=lambda msg, details: self._on_check_failed(generation, msg))

    def _on_progress(self, generation: int, what: str, share: float) -> None:
        if generation != self._generation or not self.checking:
            return
        self.busy.setRange(0, 1000)
        self.busy.setValue(int(share * 1000))
        self.summary.setText(f"Checking <b>{self.path}</b>: {what} ({share:.0%})…")

    def _on_report(self, generation: int, report: DataReport, raw: dict[str, RawSplit]) -> None:
        if generation != self._generation:
            return  # a newer check superseded this one
        self.checking = False
        self.busy.hide()
        no_prompt = not report.can_mask_prompt
        self.mask_prompt.setEnabled(not no_prompt)
        if no_prompt and self.mask_prompt.isChecked():
            self._mask_cleared = True
            self.mask_prompt.setChecked(False)  # checks again, without it
            return
        self.report, self.raw = report, raw
        keep_long_lived()  # the rows stay as long as the dataset is open
        self._render(report)
        self.token_box.set_source(raw, self.model_path, self.max_seq_length, self.mask_prompt.isChecked())
        self.report_changed.emit()

    def _on_check_failed(self, generation: int, message: str) -> None:
        if generation != self._generation:
            return
        self.checking = False
        self.busy.hide()
        self.report, self.raw = None, {}
        self.summary.setText(f"<b>Could not check the data:</b> {message}")
        self.report_changed.emit()

    # ------------------------------------------------------------ display

    def _render(self, report: DataReport | None) -> None:
        self.problems.clear()
        self.line_view.clear()
        self.histogram.clear()
        self.preview.clear()
        self.preview.setRowCount(0)
        self.preview.setColumnCount(0)
        self.problem_box.setVisible(bool(report and report.problem_count))
        train_split = report.splits.get("train") if report else None
        self.histogram.setVisible(bool(train_split and train_split.lengths))  # no empty 0-1 axes before data
        mismatch = mode_mismatch(self.train_mode, report.format) if report and report.usable else ""
        self.mode_button.setVisible(bool(mismatch))
        self.mode_button.setText(f"Train with {self._needed_mode().upper()}")
        if report is None:
            return
        cleared = self._mask_cleared and not report.can_mask_prompt
        self.summary.setText(summary_html(report, bool(self.model_path), cleared, mismatch))
        for line in report.problem_lines():
            self.problems.addItem(line)
        train = report.splits.get("train")
        if train and train.lengths:
            plot_lengths(self.histogram, train)
        if train and train.preview:
            fill_preview(self.preview, train)

    # ------------------------------------------------------------ token view

    def _preview_selected(self, row: int) -> None:
        item = self.preview.item(row, 0) if row >= 0 else None
        if item is not None:
            self.token_box.select_line(int(item.text()))

    def apply_palette(self, palette) -> None:
        style_plot(self.histogram, (self.histogram.getPlotItem(),), palette)

    def _show_problem_line(self, row: int) -> None:
        item = self.problems.item(row)
        match = _PROBLEM.match(item.text()) if item else None
        if not match:
            return
        text, index = file_excerpt(match["file"], int(match["line"]))
        self.line_view.setPlainText(text)
        if index >= 0:
            block = self.line_view.document().findBlockByNumber(index)
            selection = QTextEdit.ExtraSelection()
            fmt = QTextCharFormat()
            fmt.setBackground(QColor(255, 200, 200))
            fmt.setForeground(QColor(0, 0, 0))
            fmt.setProperty(QTextCharFormat.Property.FullWidthSelection, True)
            selection.format = fmt
            selection.cursor = QTextCursor(block)
            self.line_view.setExtraSelections([selection])
            self.line_view.setTextCursor(QTextCursor(block))
