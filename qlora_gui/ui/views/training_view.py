"""The training view: Start / Pause / Stop, progress, live charts, the log and the checkpoints list."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QFontDatabase
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSplitter,
    QTabWidget,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ...core.events import (
    CheckpointSaved,
    Event,
    Failed,
    Finished,
    GroupCompletions,
    PreferenceReport,
    Recovered,
    RewardReport,
    RunStarted,
    SampleAnswers,
    StepReport,
    TrainWarning,
    ValidationResult,
)
from ...core.runs.history import sample_answers_of, surviving_events
from ..desktop import open_folder
from ..widgets.charts import TrainingCharts
from ..widgets.completions_view import CompletionsView
from ..widgets.machine_rates import MachineRates
from ..widgets.preference_charts import PreferenceCharts
from ..widgets.reward_charts import RewardCharts
from ..widgets.sample_timeline import SampleTimeline

PATH_ROLE = Qt.ItemDataRole.UserRole
LOG_LINES = 1000


def format_seconds(s: float) -> str:
    s = int(max(s, 0))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class TrainingView(QWidget):
    start_requested = Signal()
    pause_toggled = Signal(bool)  # True: pause
    stop_requested = Signal()
    resume_requested = Signal(str)  # a checkpoint folder

    def __init__(self, parent=None):
        super().__init__(parent)
        self.running = False
        self._can_start = False
        self.total_steps = 0
        self.samples_due = False  # the run answers sample prompts (at step 0 before its first step)
        self.data_warnings: set[str] = set()  # what the Data tab already says of this run's data: not said again
        self._data_warnings_said = False
        self.start_button = QPushButton("Start training")
        self.start_button.setDefault(True)
        self.pause_button = QPushButton("Pause")
        self.pause_button.setCheckable(True)
        self.stop_button = QPushButton("Stop && save")
        self.stop_button.setToolTip("Finish the current step, save a checkpoint and end the run.")
        self.start_button.clicked.connect(self.start_requested)
        self.pause_button.toggled.connect(self._on_pause)
        self.stop_button.clicked.connect(self.stop_requested)
        self.reason = QLabel("")
        self.reason.setWordWrap(True)
        buttons = QHBoxLayout()
        buttons.addWidget(self.start_button)
        buttons.addWidget(self.pause_button)
        buttons.addWidget(self.stop_button)
        buttons.addWidget(self.reason, 1)

        self.progress = QProgressBar()
        self.progress.setFormat("step %v of %m")
        self.status = QLabel("Idle.")
        self.charts = TrainingCharts()

        self.log = QPlainTextEdit(readOnly=True)
        self.log.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))  # the events' columns line up
        # The newest lines only: in a run reporting every step, filling a log of 5,000 lines was most of the
        # window's memory growth (bench/soak.py). metrics.jsonl keeps every report.
        self.log.setMaximumBlockCount(LOG_LINES)
        self.checkpoints = QTreeWidget()
        self.checkpoints.setHeaderLabels(["Step", "Validation loss", "Best", "Saved because", "Folder"])
        self.checkpoints.setRootIsDecorated(False)
        self.checkpoints.itemSelectionChanged.connect(self._update_checkpoint_buttons)
        self.show_button = QPushButton("Show in file manager")
        self.show_button.clicked.connect(self._show_checkpoint)
        self.resume_button = QPushButton("Resume from here")
        self.resume_button.setToolTip(
            "Continue training from this checkpoint: same step, optimizer state, schedule "
            "and data order. From an older checkpoint it continues in a new run folder."
        )
        self.resume_button.clicked.connect(self._resume_checkpoint)
        ck_host = QWidget()
        ck_layout = QVBoxLayout(ck_host)
        ck_layout.setContentsMargins(0, 0, 0, 0)
        ck_layout.addWidget(self.checkpoints, 1)
        ck_buttons = QHBoxLayout()
        ck_buttons.addWidget(self.show_button)
        ck_buttons.addWidget(self.resume_button)
        ck_buttons.addStretch(1)
        ck_layout.addLayout(ck_buttons)
        self.bottom = QTabWidget()
        self.bottom.addTab(self.log, "Log")
        self.bottom.addTab(ck_host, "Checkpoints")
        self.samples = SampleTimeline()
        self.bottom.addTab(self.samples, "Sample answers")
        self.completions = CompletionsView()  # GRPO: the answers of a prompt at each report
        self.bottom.setTabVisible(self.bottom.addTab(self.completions, "Answers"), False)
        self.machines = MachineRates()  # each machine's speed, shown for a run on several
        self.bottom.setTabVisible(self.bottom.addTab(self.machines, "Machines"), False)

        self.preference = PreferenceCharts()  # beside the charts for DPO and ORPO runs: a wide window has room
        self.preference.hide()
        self.rewards = RewardCharts()  # beside the charts for GRPO runs
        self.rewards.hide()
        self.top = QSplitter(Qt.Orientation.Horizontal)
        self.top.addWidget(self.charts)
        self.top.addWidget(self.preference)
        self.top.addWidget(self.rewards)
        self.split = split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.top)
        split.addWidget(self.bottom)
        split.setSizes([480, 180])
        split.setCollapsible(0, False)  # the charts keep their room however far the bottom pane is pulled
        self.top.setMinimumHeight(220)
        self._room_given: tuple[list[int], list[int]] | None = None  # the sizes before Sample answers took room
        self.bottom.currentChanged.connect(self._give_room)
        layout = QVBoxLayout(self)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addWidget(split, 1)
        self.set_running(False)
        self._update_checkpoint_buttons()

    def _give_room(self, index: int) -> None:
        """Sample answers need height to read: their tab (and GRPO's answers) takes up to half the pane when it is
        opened, and gives it back to the charts when another tab is (unless the divider was moved meanwhile)."""
        if self.bottom.widget(index) in (self.samples, self.completions):
            top, bottom = before = self.split.sizes()
            if bottom < (top + bottom) * 0.45:
                self.split.setSizes([(top + bottom) * 55 // 100, (top + bottom) * 45 // 100])
                self._room_given = (before, self.split.sizes())
        elif self._room_given is not None:
            before, given = self._room_given
            self._room_given = None
            if self.split.sizes() == given:
                self.split.setSizes(before)

    # ------------------------------------------------------------ state

    def set_running(self, running: bool) -> None:
        self.running = running
        self.start_button.setEnabled(not running and self._can_start)
        self.pause_button.setEnabled(running)
        self.stop_button.setEnabled(running)
        if not running:
            self.pause_button.blockSignals(True)
            self.pause_button.setChecked(False)
            self.pause_button.setText("Pause")
            self.pause_button.blockSignals(False)
        self._update_checkpoint_buttons()

    def set_can_start(self, ok: bool, reason: str = "", plan: str = "") -> None:
        """`reason` says why Start is disabled; `plan` what Start would run (rows, steps, epochs)."""
        self._can_start = ok
        self.start_button.setEnabled(ok and not self.running)
        self.reason.setText(plan if ok else reason)

    def _on_pause(self, paused: bool) -> None:
        self.pause_button.setText("Resume" if paused else "Pause")
        self.pause_toggled.emit(paused)
        self.status.setText(self._paused_text() if paused else f"Resumed at step {self.progress.value()}…")
        self.append_log("paused" if paused else "resumed")

    def _paused_text(self) -> str:
        return (
            f"Paused at step {self.progress.value()} of {self.progress.maximum()}: the run waits between steps; "
            "press Resume to go on."
        )

    def append_log(self, text: str) -> None:
        self.log.appendPlainText(text)

    # ------------------------------------------------------------ trainer events

    def on_started(self, e: RunStarted, earlier: list[Event] | None = None) -> None:
        """`earlier`: a resumed run's events so far (its metrics.jsonl, read by the worker)."""
        if e.start_step == 0:
            self.charts.clear()
            self.checkpoints.clear()
            self.samples.clear()
            self.preference.clear()
            self.rewards.clear()
            self.completions.clear()
        else:
            self._continue_from(e.start_step, earlier or [])
        mode = e.config.get("train_mode", "sft")
        pairs, rewarded = mode in ("dpo", "orpo"), mode == "grpo"
        self.preference.setVisible(pairs)
        self.rewards.setVisible(rewarded)
        self.bottom.setTabVisible(self.bottom.indexOf(self.completions), rewarded)
        sizes = self.top.sizes()
        side = sizes[1] + sizes[2]
        if (pairs or rewarded) and side < 200:  # hidden when the splitter was laid out: give the charts room
            whole = sum(sizes)
            self.top.setSizes([whole * 62 // 100] + ([whole * 38 // 100, 0] if pairs else [0, whole * 38 // 100]))
        self.preference.set_total_steps(e.total_steps)
        self.rewards.set_total_steps(e.total_steps)
        self.log.clear()  # a fresh log per run: no lines of an earlier run's end
        self._data_warnings_said = False
        self.progress.setRange(0, e.total_steps)
        self.progress.setValue(e.start_step)
        self.charts.set_total_steps(e.total_steps)
        self.bottom.setTabVisible(self.bottom.indexOf(self.machines), self.machines.on_started(e))
        self.total_steps = e.total_steps
        self.status.setText(self._opening_text(e))
        self.samples_due = bool(e.config.get("sample_answers"))
        self.append_log(e.describe())

    def _continue_from(self, step: int, earlier: list[Event]) -> None:
        """A resumed run shows its line up to the checkpoint it goes on from, never the steps an earlier attempt
        reported after it: from its folder's events (resumed in place), or else (a branch into a new folder) what
        the window shows of the run it branches from."""
        history = surviving_events(earlier, step)
        if any(isinstance(x, StepReport) for x in history):
            self.charts.clear()
            self.charts.add_history(history, step)
            self.samples.set_events(sample_answers_of(history))
            self.preference.set_events(history)
            self.rewards.set_events(history)
            self.completions.set_events(history)
        else:
            self.charts.keep_up_to(step)
            self.samples.keep_up_to(step)
            self.preference.keep_up_to(step)

    def _opening_text(self, e: RunStarted) -> str:
        """What the run does before its first report: the DPO reference, the base's validation and answers."""
        first = e.start_step == 0
        parts = []
        if e.config.get("train_mode") == "dpo":
            parts.append("measuring the DPO reference (the base's log-probabilities of every pair's answers)")
        if first and e.valid_rows:
            parts.append("validating the base (step 0)")
        if first and e.config.get("sample_answers"):
            parts.append("answering the sample prompts with the base")
        parts.append(f"training from step {e.start_step}" if not first else "training")
        return "Model loaded: " + ", then ".join(parts) + "…"

    def on_progress(self, e: StepReport) -> None:
        self.charts.add_progress(e)
        self.machines.on_progress(e)
        self.progress.setValue(e.step)
        self.status.setText(
            self._paused_text()
            if self.pause_button.isChecked()
            else f"Step {e.step} of {self.progress.maximum()} · epoch {e.epoch:.2f} · loss "
            f"{e.loss:.4f} · {e.tokens_per_sec:.0f} tok/s · elapsed "
            f"{format_seconds(e.elapsed)} · ETA {format_seconds(e.eta)}"
        )
        self.append_log(e.describe())

    def on_validation(self, e: ValidationResult) -> None:
        self.charts.add_validation(e)
        if e.step == 0 and e.split == "valid" and self.progress.value() == 0:
            self.status.setText(
                f"Base validation loss {e.val_loss:.4f} (step 0); "
                + ("answering the sample prompts with the base, then training…" if self.samples_due else "training…")
            )
        self.append_log(e.describe())

    def on_preference(self, e: PreferenceReport) -> None:
        self.preference.add(e)
        self.append_log(e.describe())

    def on_rewards(self, e: RewardReport) -> None:
        self.rewards.add(e)
        each = ", ".join(f"{k} {v:.3f}" for k, v in e.functions.items())
        kl = f", KL {e.kl:.4f}" if e.kl is not None else ""
        self.append_log(
            f"step {e.step}: {e.split} mean reward {e.reward_mean:.3f} ({each}), spread {e.reward_spread:.3f}, "
            f"{e.zero_spread_share:.0%} of groups all alike, {e.completion_length:.1f} tokens per answer{kl}"
        )

    def on_completions(self, e: GroupCompletions) -> None:
        self.completions.add(e)

    def on_samples(self, e: SampleAnswers) -> None:
        self.samples.add(e.step, e.answers, e.seconds)
        self.append_log(e.describe())

    def on_warning(self, e: TrainWarning) -> None:
        if e.info or e.message not in self.data_warnings:
            self.append_log(e.describe())
        elif not self._data_warnings_said:
            self._data_warnings_said = True
            self.append_log("The Data tab's notes on this data hold for this run (tab Data).")

    def on_recovery(self, e: Recovered) -> None:
        self.charts.add_recovery(e)  # the warning that comes with it says why in the log

    def on_checkpoint(self, e: CheckpointSaved) -> None:
        existing = [self.checkpoints.topLevelItem(i) for i in range(self.checkpoints.topLevelItemCount())]
        for item in existing:
            if item.data(0, PATH_ROLE) == e.path:
                self.checkpoints.takeTopLevelItem(self.checkpoints.indexOfTopLevelItem(item))
        for item in existing:
            if not Path(item.data(0, PATH_ROLE)).exists():  # pruned by the trainer
                self.checkpoints.takeTopLevelItem(self.checkpoints.indexOfTopLevelItem(item))
        if e.is_best:
            for i in range(self.checkpoints.topLevelItemCount()):
                self.checkpoints.topLevelItem(i).setText(2, "")
        val = f"{e.val_loss:.4f}" if e.val_loss is not None else "–"
        item = QTreeWidgetItem(["", val, "★" if e.is_best else "", e.reason, e.path])
        item.setData(0, Qt.ItemDataRole.DisplayRole, e.step)  # a number, so 75 sorts before 100
        item.setData(0, PATH_ROLE, e.path)
        self.checkpoints.addTopLevelItem(item)
        self.checkpoints.sortItems(0, Qt.SortOrder.AscendingOrder)
        self.append_log(e.describe())

    def on_finished(self, e: Finished) -> None:
        how = "Stopped" if e.stopped else "Finished"
        self.progress.setValue(e.step)  # the bar and the status name the same step
        val = f", validation loss {e.val_loss:.4f}" if e.val_loss is not None else ""
        if e.val_loss is not None and self.rewards.isVisibleTo(self):  # GRPO's figure: the negated held-out reward
            val = f", held-out mean reward {-e.val_loss:.3f}"
        self.status.setText(f"{how} at step {e.step} in {format_seconds(e.elapsed)}{val}.")
        self.append_log(e.describe())
        self.set_running(False)

    def on_failed(self, e: Failed) -> None:
        self.status.setText(f"Failed: {e.message}")
        self.append_log(e.describe())
        self.set_running(False)

    # ------------------------------------------------------------ checkpoints

    def checkpoint_count(self) -> int:
        return self.checkpoints.topLevelItemCount()

    def _selected_checkpoint(self) -> str | None:
        items = self.checkpoints.selectedItems()
        return items[0].data(0, PATH_ROLE) if items else None

    def _update_checkpoint_buttons(self) -> None:
        chosen = self._selected_checkpoint()
        self.show_button.setEnabled(chosen is not None)
        self.resume_button.setEnabled(chosen is not None and not self.running)

    def _show_checkpoint(self) -> None:
        path = self._selected_checkpoint()
        if path:
            open_folder(path, self)

    def _resume_checkpoint(self) -> None:
        path = self._selected_checkpoint()
        if path:
            self.resume_requested.emit(path)
