"""The main window: Data, Model, Settings, Train, Runs and Playground tabs, and the workers' lifecycles."""

from __future__ import annotations

from pathlib import Path

from platformdirs import user_data_dir
from PySide6.QtCore import QSettings, QTimer
from PySide6.QtWidgets import QApplication, QMainWindow, QMessageBox, QTabWidget

from ..core.config import TrainConfig
from ..core.errors import ConfigError
from ..core.events import Failed
from ..core.memory import memory_budget
from ..core.runs.pending_run import PendingRun
from ..core.runs.run_plan import plan_resume, planned_total, step_plan
from ..core.train.estimate import estimate_memory
from ..core.train.preference_mode import mode_mismatch
from .desktop import dropped_data_path
from .dialogs.export_dialog import ExportDialog
from .dialogs.recovery import offer_resume
from .menus import build_menus
from .theme import apply_theme, follow_system_appearance
from .training_session import TrainingSession
from .views.dataset_panel import DatasetPanel
from .views.model_panel import ModelPanel
from .views.playground_view import PlaygroundView
from .views.runs_view import RunsView
from .views.settings_panel import SettingsPanel
from .views.training_view import TrainingView
from .window_state import RememberedParts, restore_window_state, save_window_state
from .workers.jobs import running_threads
from .workers.launch_worker import TrainingWorker, worker_for


def default_runs_root() -> Path:
    return Path(user_data_dir("QLoRA Studio", appauthor=False)) / "runs"


class MainWindow(QMainWindow):
    def __init__(self, settings: QSettings | None = None, runs_root: str | Path | None = None):
        super().__init__()
        self.setWindowTitle("QLoRA Studio")
        self.store = settings or QSettings()
        self.runs_root = Path(runs_root or self.store.value("runs_root", str(default_runs_root())))
        self.budget = memory_budget()

        self.pending = PendingRun(self.runs_root)  # the run the Data, Model and Settings tabs prepare
        self.dataset = DatasetPanel(self.pending)
        folders = self.store.value("model_folders", []) or []
        self.model = ModelPanel(folders if isinstance(folders, list) else [folders], self.pending)
        self.settings_panel = SettingsPanel(self.pending)
        self.training = TrainingView()
        self.session = TrainingSession(self.training, self)
        self.runs = RunsView(self.runs_root)
        self.playground = PlaygroundView(self.runs_root)
        self.export_dialog: ExportDialog | None = None
        self.tabs = QTabWidget()
        for widget, name in (
            (self.dataset, "1  Data"),
            (self.model, "2  Model"),
            (self.settings_panel, "3  Settings"),
            (self.training, "4  Train"),
            (self.runs, "5  Runs"),
            (self.playground, "6  Playground"),
        ):
            self.tabs.addTab(widget, name)
        self.tabs.currentChanged.connect(self._on_tab_changed)
        self.setCentralWidget(self.tabs)
        self.setAcceptDrops(True)
        self.start_action, self.dark_action = build_menus(self)

        self.dataset.report_changed.connect(self._refresh)
        self.dataset.demo_model_requested.connect(self.model.use_demo)
        self.dataset.mode_requested.connect(lambda mode: self.settings_panel.set_value("train_mode", mode))
        self.model.model_changed.connect(self._refresh)  # also when it is being built (nothing starts then)
        self.pending.subscribe(lambda changed: self._refresh())
        self.settings_panel.preflight.finished.connect(self._refresh)  # the measured peak replaces the estimate
        self.training.start_requested.connect(self.start_training)
        self.training.stop_requested.connect(self.stop_training)
        self.training.pause_toggled.connect(self._pause)
        self.training.resume_requested.connect(self.resume_from_checkpoint)
        self.runs.try_requested.connect(self.try_run)
        self.runs.export_requested.connect(self.export_run)
        self.runs.resume_requested.connect(self.resume_from_checkpoint)
        self.session.ended.connect(self.runs.refresh)
        self.session.thread_done.connect(self._on_thread_done)
        self._style_plots(self.palette())
        self.appearance = follow_system_appearance(self, self._style_plots)  # macOS: live light/dark
        self._restore()
        self._refresh()
        self.resume_offer = None  # a run cut off last time is offered once the window is up
        QTimer.singleShot(
            0,
            lambda: setattr(
                self, "resume_offer", offer_resume(self, self.runs_root, self.store, self.resume_from_checkpoint)
            ),
        )

    # ------------------------------------------------------------ theme

    def set_dark(self, dark: bool) -> None:
        palette = apply_theme(QApplication.instance(), dark)
        self.dark_action.setChecked(dark)
        self._style_plots(palette)
        self.store.setValue("dark", dark)

    def _style_plots(self, palette) -> None:
        self.training.charts.apply_palette(palette)
        self.training.preference.apply_palette(palette)
        self.training.rewards.apply_palette(palette)
        self.dataset.apply_palette(palette)
        self.runs.apply_palette(palette)

    # ------------------------------------------------------------ data in

    def dragEnterEvent(self, event) -> None:
        if dropped_data_path(event.mimeData()):
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        path = dropped_data_path(event.mimeData())
        if path:
            event.acceptProposedAction()
            self.open_dataset(path)

    def open_dataset(self, path: str | Path) -> None:
        self.dataset.set_path(path)
        self.tabs.setCurrentWidget(self.dataset)

    # ------------------------------------------------------------ state

    def current_config(self) -> TrainConfig | None:
        """Settings + model + data as one TrainConfig in a new run folder, or None (the reason is shown in the
        form)."""
        return self.pending.config_to_start()

    def _refresh(self) -> None:
        self.runs.busy_run = self.session.busy_run
        self.runs.update_actions()  # a run that starts or stops training changes what may act on it
        cfg = self.current_config()
        reason = ""
        if not self.dataset.path:
            reason = "Drop a dataset on the window or open one (Data tab)."
        elif self.dataset.checking:
            reason = "Checking the data…"
        elif not self.dataset.usable:
            reason = "The data has problems: see the Data tab."
        elif self.model.busy:
            reason = "Preparing the model…"
        elif not self.model.selected_path:
            reason = "Pick a model (Model tab)."
        elif self.model.problem:
            reason = "The model folder has a problem: see the Model tab."
        elif cfg is None:
            reason = f"Settings: {self.pending.problem} (Settings tab)."
        elif self.dataset.report and (mismatch := mode_mismatch(cfg.train_mode, self.dataset.report.format)):
            reason = mismatch[0].upper() + mismatch[1:] + "."
        self.training.set_can_start(not reason, reason, self._plan(cfg) if not reason else "")
        self.start_action.setEnabled(not reason and self.worker is None)
        self._update_estimate(cfg)

    def _train_rows(self) -> int | None:
        train = self.dataset.report.splits.get("train") if self.dataset.report else None
        return train.rows if train else None

    def _plan(self, cfg) -> str:
        return step_plan(rows, cfg) if (rows := self._train_rows()) is not None else ""

    def _update_estimate(self, cfg) -> float | None:
        info = self.model.selected
        if info is None or cfg is None:
            self.settings_panel.show_estimate(
                "Memory estimate: pick a model." if info is None else "Memory estimate: fix the setting above first.",
                None,
            )
            return None
        train = self.dataset.report.splits.get("train") if self.dataset.report else None
        longest = train.max_len if train and train.unit == "tokens" else None
        return self.settings_panel.show_memory_estimate(
            estimate_memory(info.path, cfg, info.parameters, info.bits, longest),
            self.budget,
            self.settings_panel.preflight.measured_peak_gb(cfg),
        )

    # ------------------------------------------------------------ training

    def confirm(self, title: str, text: str) -> bool:
        return QMessageBox.question(self, title, text) == QMessageBox.StandardButton.Yes

    def start_training(self) -> None:
        cfg = self.current_config()
        if cfg is None or self.worker is not None or not self.dataset.usable:
            return
        measured = self.settings_panel.preflight.measured_share(cfg)  # a preflight of these very settings
        share = measured if measured is not None else self._update_estimate(cfg)
        what = "measured peak memory" if measured is not None else "memory estimate"
        if (
            share is not None
            and share > 1
            and not self.confirm(
                "Memory", f"The {what} is over what this machine has. Training may swap or fail. Start anyway?"
            )
        ):
            return
        self.training.data_warnings = set(self.dataset.report.warnings) if self.dataset.report else set()
        self._launch(worker_for(cfg, self.settings_panel.machines.choice()))

    def resume_from_checkpoint(self, checkpoint: str) -> None:
        try:
            plan = plan_resume(checkpoint, self.runs_root)
        except ConfigError as e:
            self.show_error(Failed(str(e)))
            return
        self.training.data_warnings = set()  # the run's own data, which the Data tab may not show
        self._launch(worker_for(plan.config, self.settings_panel.machines.choice(), plan.resume_from))

    def _launch(self, worker: TrainingWorker) -> None:
        self.playground.unload()  # the playground's model would compete with training for memory
        self.tabs.setCurrentWidget(self.training)  # first: the session paints it before the worker starts
        self.session.launch(worker, self.budget, planned_total(self._train_rows(), worker.config))
        self._remember()
        self._refresh()

    def _pause(self, paused: bool) -> None:
        self.session.pause(paused)

    def stop_training(self) -> None:
        self.session.stop()

    def show_error(self, failure: Failed) -> None:
        self.session.show_error(failure)

    @property
    def worker(self) -> TrainingWorker | None:
        return self.session.worker

    @property
    def error_dialog(self) -> QMessageBox | None:
        return self.session.error_dialog

    def _on_thread_done(self) -> None:
        self._refresh()
        if self.tabs.currentWidget() is self.playground:
            self.playground.refresh()
        if self.session.close_after_stop:
            self.close()

    # ------------------------------------------------------------ after training

    def _on_tab_changed(self, index: int) -> None:
        if self.tabs.widget(index) is not self.playground:
            return
        if self.worker is None:
            self.playground.refresh()  # loads a model only when the choice differs from the loaded one
        elif not self.playground.loaded_label:
            self.playground.status.setText(
                "Training is running: the playground loads a model when it ends "
                "(or pick a run in the Runs tab and press Try in Playground)."
            )

    def try_run(self, run_dir: str) -> None:
        self.tabs.blockSignals(True)  # select_run loads the chosen run; the tab switch must not load another
        self.tabs.setCurrentWidget(self.playground)
        self.tabs.blockSignals(False)
        self.playground.select_run(run_dir)

    def export_run(self, run_dir: str) -> None:
        if self.export_dialog is not None and self.export_dialog.job is not None:
            self.export_dialog.raise_()
            return
        self.export_dialog = ExportDialog(Path(run_dir), self.runs_root.parent / "exports", self)
        self.export_dialog.open()

    # ------------------------------------------------------------ persistence and close

    def _remembered(self) -> RememberedParts:
        return RememberedParts(self.store, self, self.dataset, self.model, self.settings_panel)

    def _remember(self) -> None:
        save_window_state(self._remembered())

    def _restore(self) -> None:
        if restore_window_state(self._remembered()):
            self.set_dark(True)

    def closeEvent(self, event) -> None:
        if not self.session.ready_to_close(self.confirm):
            event.ignore()  # asked first; when a run was running, the window closes once it has saved
            return
        self._remember()
        self.playground.shutdown()
        for thread in running_threads():  # an evaluation or a fuse finishes writing its files first
            thread.wait()
        super().closeEvent(event)
