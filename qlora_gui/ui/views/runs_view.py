"""Earlier runs: settings, losses, evaluations and curves; act on one: try, evaluate, export, resume, file it."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QMessageBox,
    QPlainTextEdit,
    QPushButton,
    QSplitter,
    QTabWidget,
    QTreeWidget,
    QVBoxLayout,
    QWidget,
)

from ...core.after.evaluation import evaluate_run, evaluation_text, last_row_losses, read_evaluations
from ...core.errors import UserError
from ...core.runs.history import read_events
from ...core.runs.run_admin import (
    differences_text,
    read_notes,
    rename_run,
    resume_point,
    settings_differences,
    write_notes,
)
from ...core.runs.run_folder import run_of
from ...core.runs.run_import import BaseModelNeeded, add_run_folder
from ...core.runs.run_lock import folder_owner, in_use_message
from ...core.runs.run_summary import RunSummary, list_runs
from ..desktop import move_to_trash, open_folder
from ..dialogs.hard_rows_dialog import HardRowsDialog
from ..widgets.completions_view import CompletionsView
from ..widgets.reward_charts import RewardCharts
from ..widgets.run_curves import RunCurvesPlot
from ..widgets.sample_timeline import SampleTimeline
from ..workers.jobs import start_job
from .run_rows import COLUMN_INDEX, COLUMNS, PATH_ROLE, WIDEST_COLUMN, RunItem, run_row


class RunsView(QWidget):
    try_requested = Signal(str)  # a run folder
    resume_requested = Signal(str)  # a checkpoint folder
    export_requested = Signal(str)
    evaluated = Signal()

    def __init__(self, runs_root: Path, parent=None):
        super().__init__(parent)
        self.runs_root = Path(runs_root)
        self.eval_job = None
        self.busy_run: str | None = None  # the run folder training writes to now (the window says)
        self.table = QTreeWidget()
        self.table.setHeaderLabels([name for name, _ in COLUMNS])
        for col, (_, tip) in enumerate(COLUMNS):
            self.table.headerItem().setToolTip(col, tip)
        self.table.setRootIsDecorated(False)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.itemSelectionChanged.connect(self.plot_selected)
        self.table.setSortingEnabled(True)
        self.table.header().setResizeContentsPrecision(100)  # columns fitted to 100 rows, not each of a thousand
        self.table.sortByColumn(COLUMN_INDEX["Date"], Qt.SortOrder.DescendingOrder)  # newest first, arrow to match
        self.plot = RunCurvesPlot()
        self.samples = SampleTimeline()
        self.figures = QTabWidget()
        self.figures.addTab(self.plot, "Loss curves")
        self.figures.addTab(self.samples, "Sample answers")
        self.rewards = RewardCharts()  # a GRPO run's rewards and answers, replayed from its metrics.jsonl
        self.completions = CompletionsView()
        self.figures.setTabVisible(self.figures.addTab(self.rewards, "Rewards"), False)
        self.figures.setTabVisible(self.figures.addTab(self.completions, "Answers"), False)
        self.root_label = QLabel()
        refresh = QPushButton("Refresh")
        refresh.clicked.connect(self.refresh)
        add_button = QPushButton("Add a run folder…")
        add_button.setToolTip(
            "A run folder from elsewhere: one of ours, or adapters trained by mlx_lm.lora or mlx-lm-lora "
            "(adapters.safetensors and adapter_config.json, its base named there). It is linked or copied here."
        )
        add_button.clicked.connect(self._ask_add_run)
        open_button = QPushButton("Show in file manager")
        open_button.clicked.connect(self._open_selected)
        self.try_button = QPushButton("Try in Playground")
        self.try_button.setToolTip("Compare the adapter with the base, side by side.")
        self.try_button.clicked.connect(lambda: self.emit_for_selected(self.try_requested))
        self.eval_button = QPushButton("Evaluate")
        self.eval_button.setToolTip(
            "Loss and perplexity of the base and the adapter (best checkpoint) on the test "
            "split, or the held-out validation split; saved in the run folder."
        )
        self.eval_button.clicked.connect(self.evaluate_selected)
        self.export_button = QPushButton("Fuse && export…")
        self.export_button.clicked.connect(lambda: self.emit_for_selected(self.export_requested))
        self.rows_button = QPushButton("Hardest rows…")
        self.rows_button.setToolTip(
            "The rows with the highest loss under the adapter, and those it improved least (from the last Evaluate)"
        )
        self.rows_button.clicked.connect(self.show_hard_rows)
        self.resume_button = QPushButton("Resume")
        self.resume_button.setToolTip("Continue a run that ended before its last step from its latest checkpoint")
        self.resume_button.clicked.connect(self.resume_selected)
        self.rename_button = QPushButton("Rename…")
        self.rename_button.clicked.connect(self._ask_rename)
        self.notes_button = QPushButton("Notes…")
        self.notes_button.clicked.connect(self._ask_notes)
        self.delete_button = QPushButton("Move to trash…")
        self.delete_button.clicked.connect(self._ask_delete)
        top = QHBoxLayout()
        top.addWidget(self.root_label, 1)
        top.addWidget(refresh)
        top.addWidget(add_button)
        top.addWidget(open_button)
        actions = QHBoxLayout()
        actions.addWidget(self.try_button)
        actions.addWidget(self.eval_button)
        actions.addWidget(self.rows_button)
        actions.addWidget(self.export_button)
        actions.addWidget(self.resume_button)
        actions.addStretch(1)
        for button in (self.rename_button, self.notes_button, self.delete_button):
            actions.addWidget(button)
        self.summary = QLabel("")
        self.summary.setWordWrap(True)
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.table)
        split.addWidget(self.figures)
        split.setSizes([260, 400])
        self._stale, self._sized = True, False
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addLayout(actions)
        layout.addWidget(self.summary)
        layout.addWidget(split, 1)
        self._summaries: dict[str, RunSummary] = {}

    def refresh(self) -> None:
        """Read the runs again now if the tab is shown; else when it is next shown (a window with a thousand
        runs starts without reading them)."""
        self._stale = True
        if self.isVisible():
            self._fill()

    def showEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        super().showEvent(event)
        self._ensure_fresh()

    def _ensure_fresh(self) -> None:
        if self._stale:
            self._fill()

    def _fill(self) -> None:
        self._stale = False
        self.root_label.setText(f"Runs in {self.runs_root} (select two or more to compare)")
        chosen = {item.text(0) for item in self.table.selectedItems()}
        self.table.setUpdatesEnabled(False)
        self.table.blockSignals(True)  # one plot of the selection at the end, not one per cleared row
        self.table.setSortingEnabled(False)  # sorted once when filled, not at each row
        self.table.clear()
        self._summaries: dict[str, RunSummary] = {}
        items = []
        for run in list_runs(self.runs_root):
            self._summaries[str(run.path)] = run
            item = RunItem(run_row(run))
            item.setData(0, PATH_ROLE, str(run.path))
            item.setToolTip(COLUMN_INDEX["Notes"], run.notes)
            item.setToolTip(COLUMN_INDEX["Settings"], item.text(COLUMN_INDEX["Settings"]))
            items.append(item)
        self.table.addTopLevelItems(items)
        self.table.setSortingEnabled(True)
        if not self._sized and items:  # columns fitted to the first runs shown; the user's widths kept after
            self._sized = True
            for col in range(self.table.columnCount()):
                self.table.resizeColumnToContents(col)
                self.table.setColumnWidth(col, min(self.table.columnWidth(col), WIDEST_COLUMN))
        for item in items:
            item.setSelected(item.text(0) in chosen)
        self.table.blockSignals(False)
        self.table.setUpdatesEnabled(True)
        self.plot_selected()

    def run_count(self) -> int:
        self._ensure_fresh()
        return self.table.topLevelItemCount()

    def select_runs(self, names: list[str]) -> None:
        self._ensure_fresh()
        for i in range(self.table.topLevelItemCount()):
            item = self.table.topLevelItem(i)
            item.setSelected(item.text(0) in names)

    def selected_run(self) -> str | None:
        """The one selected run; None when none or several are (the actions act on exactly one)."""
        items = self.table.selectedItems()
        return items[0].data(0, PATH_ROLE) if len(items) == 1 else None

    def emit_for_selected(self, signal) -> None:
        run = self.selected_run()
        if run:
            signal.emit(run)

    def evaluate_selected(self) -> None:
        run = self.selected_run()
        if not run or self.eval_job is not None:
            return
        data = None
        if not self._config_of(run).get("data"):  # mlx-lm-lora's folders do not name the data they trained on
            data, _ = QFileDialog.getOpenFileName(
                self,
                f"The data to evaluate {Path(run).name} on (its folder does not name any)",
                str(Path.home()),
                "Data (*.jsonl *.json);;All files (*)",
            )
            if not data:
                return
        self.summary.setText(f"Evaluating {Path(run).name}: the base, then the adapter…")
        self.eval_job = start_job(evaluate_run, run, data, on_done=self._evaluated, on_failed=self._eval_failed)
        self.update_actions()

    def _evaluated(self, result) -> None:
        self.eval_job = None
        self.refresh()
        self.select_runs([run_of(result.adapter).name])
        self.evaluated.emit()

    def _eval_failed(self, message: str, details: str) -> None:
        self.eval_job = None
        self.summary.setText(f"⚠ Evaluation failed: {message}")
        self.update_actions()

    def update_actions(self) -> None:
        """Enable what applies to the selection; a run that is training is only tried, never changed."""
        run = self.selected_run()
        several = len(self.table.selectedItems()) > 1
        busy = bool(run) and self.busy_run == run
        self.try_button.setEnabled(bool(run))
        self.notes_button.setEnabled(bool(run))
        self.eval_button.setEnabled(bool(run) and not busy and self.eval_job is None)
        for button in (self.export_button, self.rename_button, self.delete_button):
            button.setEnabled(bool(run) and not busy and self.eval_job is None)
        summary = self._summaries.get(run) if run else None
        self.rows_button.setEnabled(summary is not None and summary.has_row_losses)
        point = self._resume_point(run) if run and not busy else None
        self.resume_button.setEnabled(point is not None)
        self.resume_button.setText(f"Resume from step {point.step}" if point else "Resume")
        for button in (
            self.try_button,
            self.eval_button,
            self.export_button,
            self.rename_button,
            self.notes_button,
            self.delete_button,
        ):
            button.setToolTip(
                f"Acts on {Path(run).name}"
                if run
                else "Select one run: these act on one run at a time"
                if several
                else "Select a run"
            )
        if busy:
            for button in (self.eval_button, self.export_button, self.rename_button, self.delete_button):
                button.setToolTip("This run is training (its checkpoints are still changing): stop it first")

    # ------------------------------------------------------------ filing: rename, notes, trash

    def _ask_add_run(self) -> None:
        folder = QFileDialog.getExistingDirectory(
            self, "Add a run folder: one of ours, or one written by mlx_lm.lora or mlx-lm-lora", str(Path.home())
        )
        if folder:
            self.add_run(folder)

    def add_run(self, folder: str, model: str | None = None) -> None:
        """Add a run folder from elsewhere to the runs folder (linked or copied, the original untouched) and
        select it; a folder that is not one says why. Its base model is asked for when its config names none."""
        try:
            added = add_run_folder(folder, self.runs_root, model)
        except BaseModelNeeded as e:
            self.summary.setText(f"⚠ {e}")
            base = QFileDialog.getExistingDirectory(self, f"The base model {Path(folder).name} was trained on")
            if base:
                self.add_run(folder, base)
            return
        except (UserError, OSError) as e:
            self.summary.setText(f"⚠ {e}")
            return
        self.refresh()
        self.select_runs([added.name])

    def _ask_rename(self) -> None:
        run = self.selected_run()
        if not run:
            return
        self.rename_dialog = dialog = QInputDialog(self)
        dialog.setWindowTitle("Rename run")
        dialog.setLabelText("New name for the run folder:")
        dialog.setTextValue(Path(run).name)
        # Wide enough for the whole name (Qt's default is about 200 px, which cuts a dated run name).
        dialog.resize(
            max(480, dialog.fontMetrics().horizontalAdvance(Path(run).name) + 120), dialog.sizeHint().height()
        )
        if dialog.exec():
            self.rename_selected(dialog.textValue())

    def rename_selected(self, name: str) -> None:
        run = self.selected_run()
        if not run or self.busy_run == run:
            return
        try:
            new = rename_run(Path(run), name)
        except (UserError, OSError) as e:
            self.refresh()  # the folder may have been renamed before the failure
            self.select_runs([Path(run).name if Path(run).exists() else name.strip()])
            self.summary.setText(f"⚠ {e}")
            return
        self.refresh()
        self.select_runs([new.name])

    def _ask_notes(self) -> None:
        run = self.selected_run()
        if not run:
            return
        self.notes_dialog = dialog = QInputDialog(self)
        dialog.setOption(QInputDialog.InputDialogOption.UsePlainTextEditForTextInput)
        dialog.setWindowTitle(f"Notes — {Path(run).name}")
        dialog.setLabelText("Notes on this run (saved in its folder as notes.md):")
        dialog.setTextValue(read_notes(Path(run)))
        edit = dialog.findChild(QPlainTextEdit)
        if edit is not None:  # long lines wrap at the box's width
            edit.setLineWrapMode(QPlainTextEdit.LineWrapMode.WidgetWidth)
        dialog.resize(560, 360)
        if dialog.exec():
            self.set_notes(dialog.textValue())

    def set_notes(self, text: str) -> None:
        run = self.selected_run()
        if not run:
            return
        try:
            write_notes(Path(run), text)
        except OSError as e:
            self.summary.setText(f"⚠ Notes not saved: {e}")
            return
        self.refresh()
        self.select_runs([Path(run).name])

    def _ask_delete(self) -> None:
        run = self.selected_run()
        if not run:
            return
        answer = QMessageBox.question(
            self,
            "Move run to trash",
            f"Move the run '{Path(run).name}' (its checkpoints, metrics and notes) to the "
            "trash? You can restore it from there.",
        )
        if answer == QMessageBox.StandardButton.Yes:
            self.trash_selected()

    def trash_selected(self) -> bool:
        """Move the selected run folder to the system trash; never deletes outright."""
        run = self.selected_run()
        if not run or self.busy_run == run:
            return False
        owner = folder_owner(Path(run))
        if owner is not None:
            self.summary.setText(f"⚠ Not moved to the trash: {in_use_message(Path(run), owner)}")
            return False
        if not move_to_trash(run):
            self.summary.setText(
                f"⚠ {Path(run).name} could not be moved to the trash, so it was left as it is. "
                f"Delete the folder yourself if you want it gone: {run}"
            )
            return False
        self.refresh()
        self.summary.setText(f"Moved {Path(run).name} to the trash.")
        return True

    def _show_summary(self) -> None:
        if self.eval_job is not None:
            return
        items = self.table.selectedItems()
        if len(items) > 1:
            configs = [self._config_of(item.data(0, PATH_ROLE)) for item in items]
            self.summary.setText(differences_text([item.text(0) for item in items], settings_differences(configs)))
            return
        run = self.selected_run()
        results = read_evaluations(Path(run)) if run else []
        notes = read_notes(Path(run)).strip() if run else ""
        self.summary.setText(
            f"{Path(run).name}: "
            + (evaluation_text(results) if results else "no evaluation yet: press Evaluate.")
            + (f"\nNotes: {notes}" if notes else "")
            if run
            else ""
        )

    def show_hard_rows(self) -> None:
        run = self.selected_run()
        rows, measured = last_row_losses(read_evaluations(Path(run))) if run else ([], "")
        if rows:
            self.hard_rows = HardRowsDialog(Path(run).name, rows, measured, self)
            self.hard_rows.show()

    def _config_of(self, run: str) -> dict:
        summary = self._summaries.get(run)
        return summary.config if summary else {}

    def _resume_point(self, run: str):
        summary = self._summaries.get(run)
        return resume_point(summary) if summary else None

    def resume_selected(self) -> None:
        run = self.selected_run()
        point = self._resume_point(run) if run and self.busy_run is None else None
        if point is not None:
            self.resume_requested.emit(str(point.path))

    def plot_selected(self) -> None:
        self.update_actions()
        self._show_summary()
        items = self.table.selectedItems()
        self.plot.show_runs([(item.text(0), Path(item.data(0, PATH_ROLE))) for item in items])
        run = self.selected_run()
        self.samples.set_events(self.plot.readings.sample_answers(Path(run)) if run else [])
        rewarded = bool(run) and self._config_of(run).get("train_mode") == "grpo"
        for tab in (self.rewards, self.completions):
            self.figures.setTabVisible(self.figures.indexOf(tab), rewarded)
        if rewarded:
            events = read_events(Path(run))
            self.rewards.set_events(events)
            self.completions.set_events(events)

    @property
    def plotted(self) -> list[str]:
        return self.plot.plotted

    def apply_palette(self, palette) -> None:
        self.plot.apply_palette(palette)
        self.rewards.apply_palette(palette)

    def _open_selected(self) -> None:
        items = self.table.selectedItems()
        target = items[0].data(0, PATH_ROLE) if items else str(self.runs_root)
        open_folder(target, self)
