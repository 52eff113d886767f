"""The main window: Data, Model, Settings, Train, Runs and Playground tabs, and the workers' lifecycles."""

from __future__ import annotations

from pathlib import Path

from platformdirs import user_data_dir
from PySide6.QtCore import QSettings, QTimer
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QApplication, QMainWindow, QMessageBox, QTabWidget

from .. import __version__
from ..core.app_log import log_dir
from ..core.errors import ConfigError
from ..core.estimate import estimate_memory
from ..core.events import CheckpointSaved, Failed, Finished, RunStarted, StepReport, TrainWarning, ValidationResult
from ..core.intake import DATA_SUFFIXES
from ..core.memory import GB, memory_budget
from ..core.run_plan import new_run_folder, plan_resume, step_plan
from ..core.runs import read_events
from .dataset_panel import DatasetPanel
from .desktop import open_folder
from .export_dialog import ExportDialog
from .help_dialogs import ShortcutsDialog, UserGuideDialog
from .jobs import running_threads
from .model_panel import ModelPanel
from .playground_view import PlaygroundView
from .recovery import offer_resume
from .runs_view import RunsView
from .settings_panel import SettingsPanel
from .theme import apply_theme
from .training_view import TrainingView
from .window_state import restore_window_state, save_window_state
from .worker import TrainingWorker


def default_runs_root() -> Path:
    return Path(user_data_dir("QLoRA Studio", appauthor=False)) / "runs"


class MainWindow(QMainWindow):
    def __init__(self, settings: QSettings | None = None, runs_root: str | Path | None = None):
        super().__init__()
        self.setWindowTitle("QLoRA Studio")
        self.store = settings or QSettings()
        self.runs_root = Path(runs_root or self.store.value("runs_root", str(default_runs_root())))
        self.worker: TrainingWorker | None = None
        self.error_dialog: QMessageBox | None = None
        self._close_after_stop = False
        self._run_ended = False  # the current worker has sent finished or failed
        self.budget = memory_budget()

        self.dataset = DatasetPanel()
        folders = self.store.value("model_folders", []) or []
        self.model = ModelPanel(folders if isinstance(folders, list) else [folders])
        self.settings_panel = SettingsPanel()
        self.settings_panel.command_source = self.current_config
        self.training = TrainingView()
        self.runs = RunsView(self.runs_root)
        self.runs.busy_run = lambda: self.worker.config.adapter_path if self.worker else None
        self.playground = PlaygroundView(self.runs_root)
        self.export_dialog: ExportDialog | None = None
        self.tabs = QTabWidget()
        for widget, name in ((self.dataset, "1  Data"), (self.model, "2  Model"),
                             (self.settings_panel, "3  Settings"), (self.training, "4  Train"), (self.runs, "5  Runs"),
                             (self.playground, "6  Playground")):
            self.tabs.addTab(widget, name)
        self.tabs.currentChanged.connect(self._on_tab_changed)
        self.setCentralWidget(self.tabs)
        self.setAcceptDrops(True)
        self._build_menus()

        self.dataset.report_changed.connect(self._refresh)
        self.model.model_changed.connect(self._on_model_changed)
        self.settings_panel.changed.connect(self._on_settings_changed)
        self.training.start_requested.connect(self.start_training)
        self.training.stop_requested.connect(self.stop_training)
        self.training.pause_toggled.connect(self._pause)
        self.training.resume_requested.connect(self.resume_from_checkpoint)
        self.runs.try_requested.connect(self.try_run)
        self.runs.export_requested.connect(self.export_run)
        self.runs.resume_requested.connect(self.resume_from_checkpoint)
        self._style_plots(self.palette())
        self._restore()
        self._refresh()
        self.resume_offer = None  # a run cut off last time is offered once the window is up
        QTimer.singleShot(0, lambda: setattr(self, "resume_offer", offer_resume(
            self, self.runs_root, self.store, self.resume_from_checkpoint)))

    # ------------------------------------------------------------ menus and theme

    def _build_menus(self) -> None:
        def action(menu, text, slot, shortcut=None):
            a = QAction(text, self)
            a.triggered.connect(slot)
            if shortcut:
                a.setShortcut(QKeySequence(shortcut))
            menu.addAction(a)
            return a

        file_menu = self.menuBar().addMenu("&File")
        action(file_menu, "Open dataset file…", self.dataset._browse_file, QKeySequence.StandardKey.Open)
        action(file_menu, "Open data folder…", self.dataset._browse_folder)
        action(file_menu, "Open model folder…", self.model._browse)
        file_menu.addSeparator()
        action(file_menu, "Load settings…", self.settings_panel._load)
        action(file_menu, "Save settings…", self.settings_panel._save)
        action(file_menu, "Copy CLI command", self.settings_panel.copy_command)
        file_menu.addSeparator()
        action(file_menu, "Quit", self.close, QKeySequence.StandardKey.Quit)
        run_menu = self.menuBar().addMenu("&Run")
        self.start_action = action(run_menu, "Start training", self.start_training, "Ctrl+R")
        action(run_menu, "Stop and save", self.stop_training, "Ctrl+.")
        run_menu.addSeparator()
        action(run_menu, "Try the selected run in the Playground", lambda: self.runs._emit_for_selected(
            self.runs.try_requested))
        action(run_menu, "Evaluate the selected run", self.runs.evaluate_selected)
        action(run_menu, "Fuse && export the selected run…", lambda: self.runs._emit_for_selected(
            self.runs.export_requested))
        view_menu = self.menuBar().addMenu("&View")
        self.dark_action = action(view_menu, "Dark theme", lambda on: self.set_dark(on))
        self.dark_action.setCheckable(True)
        help_menu = self.menuBar().addMenu("&Help")
        action(help_menu, "User guide", lambda: UserGuideDialog(self).show(), QKeySequence.StandardKey.HelpContents)
        action(help_menu, "Keyboard shortcuts", lambda: ShortcutsDialog(self).show())  # each deletes itself on close
        action(help_menu, "Open log folder", lambda: open_folder(log_dir(), self))
        action(help_menu, "About QLoRA Studio", lambda: QMessageBox.about(
            self, "QLoRA Studio", f"QLoRA Studio {__version__}\nFine-tune local LLMs with QLoRA on MLX."))

    def set_dark(self, dark: bool) -> None:
        palette = apply_theme(QApplication.instance(), dark)
        self.dark_action.setChecked(dark)
        self._style_plots(palette)
        self.store.setValue("dark", dark)

    def _style_plots(self, palette) -> None:
        self.training.charts.apply_palette(palette)
        self.dataset.apply_palette(palette)
        self.runs.apply_palette(palette)

    # ------------------------------------------------------------ data in

    def dragEnterEvent(self, event) -> None:
        if self._dropped_path(event.mimeData()):
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        path = self._dropped_path(event.mimeData())
        if path:
            event.acceptProposedAction()
            self.open_dataset(path)

    @staticmethod
    def _dropped_path(mime) -> str | None:
        for url in mime.urls() if mime.hasUrls() else []:
            path = Path(url.toLocalFile())
            if path.is_dir() or path.suffix.lower() in DATA_SUFFIXES:
                return str(path)
        return None

    def open_dataset(self, path: str | Path) -> None:
        self.dataset.set_path(path)
        self.tabs.setCurrentWidget(self.dataset)

    # ------------------------------------------------------------ state

    def _on_model_changed(self) -> None:
        self.dataset.set_model(self.model.selected_path if not self.model.busy else None)
        self._refresh()

    def _on_settings_changed(self) -> None:
        cfg = self.settings_panel.check()
        if cfg:
            self.dataset.set_limits(cfg.max_seq_length, cfg.batch_size)
        self._refresh()

    def current_config(self):
        """Settings + model + data as one TrainConfig, or None (the reason is shown in the form)."""
        cfg = self.settings_panel.check()
        if cfg is None:
            return None
        cfg.model = self.model.selected_path or ""
        cfg.quantize_bits = self.model.quantize_bits
        cfg.quantize_group_size = self.model.group
        cfg.data = self.dataset.path
        cfg.mask_prompt = self.dataset.mask_prompt.isChecked()
        cfg.valid_fraction = self.dataset.valid_share.value()
        cfg.adapter_path = str(new_run_folder(self.runs_root, cfg.model))
        return cfg

    def _refresh(self) -> None:
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
            reason = f"Settings: {self.settings_panel.problem} (Settings tab)."
        self.training.set_can_start(not reason, reason, self._plan(cfg) if not reason else "")
        self.start_action.setEnabled(not reason and self.worker is None)
        self._update_estimate(cfg)

    def _plan(self, cfg) -> str:
        train = self.dataset.report.splits.get("train") if self.dataset.report else None
        return step_plan(train.rows, cfg) if train else ""

    def _update_estimate(self, cfg) -> float | None:
        info = self.model.selected
        if info is None or cfg is None:
            self.settings_panel.show_estimate("Memory estimate: pick a model." if info is None else
                                              "Memory estimate: fix the setting above first.", None)
            return None
        train = self.dataset.report.splits.get("train") if self.dataset.report else None
        longest = train.max_len if train and train.unit == "tokens" else None
        est = estimate_memory(info.path, cfg, info.parameters, info.bits, longest)
        if est is None:
            self.settings_panel.show_estimate("Memory estimate: unknown for this model's config.", None)
            return None
        share = est.total / self.budget
        text = (f"Memory estimate: {est.total / GB:.2f} GB of {self.budget / GB:.0f} GB available "
                f"(weights {est.weights / GB:.2f}, adapters + optimizer {est.adapters / GB:.2f}, "
                f"activations {est.activations / GB:.2f}). A rough guide.")
        if share > 1:
            text += " Over the limit: lower the batch size or max length, or quantize the base."
        self.settings_panel.show_estimate(text, share)
        return share

    # ------------------------------------------------------------ training

    def confirm(self, title: str, text: str) -> bool:
        return QMessageBox.question(self, title, text) == QMessageBox.StandardButton.Yes

    def start_training(self) -> None:
        cfg = self.current_config()
        if cfg is None or self.worker is not None or not self.dataset.usable:
            return
        share = self._update_estimate(cfg)
        if share is not None and share > 1 and not self.confirm(
                "Memory", "The memory estimate is over what this machine has. Training may swap or fail. Start anyway?"):
            return
        self._launch(TrainingWorker(cfg))

    def resume_from_checkpoint(self, checkpoint: str) -> None:
        try:
            plan = plan_resume(checkpoint, self.runs_root)
        except ConfigError as e:
            self.show_error(Failed(str(e)))
            return
        self._launch(TrainingWorker(plan.config, resume_from=plan.resume_from))

    def _launch(self, worker: TrainingWorker) -> None:
        self.playground.unload()  # the playground's model would compete with training for memory
        self.worker = worker
        self._run_ended = False
        t = self.training
        handlers = {RunStarted: self._on_started, StepReport: t.on_progress, ValidationResult: t.on_validation,
                    TrainWarning: t.on_warning, CheckpointSaved: t.on_checkpoint, Finished: self._on_finished,
                    Failed: self._on_failed}
        worker.event.connect(lambda event: handlers[type(event)](event))
        worker.finished.connect(self._on_thread_done)
        t.set_running(True)
        limit = worker.config.memory_limit_gb or self.budget / GB
        t.charts.set_memory_limit(limit)
        t.status.setText("Loading the model…")
        self.tabs.setCurrentWidget(t)
        self._remember()
        worker.start()
        self._refresh()

    def _on_started(self, e: RunStarted) -> None:
        if e.start_step > 0 and not self.training.charts.steps:  # a resumed run shows its history
            self.training.charts.add_history(read_events(Path(e.run_dir)), e.start_step)
        self.training.on_started(e)

    def _pause(self, paused: bool) -> None:
        if self.worker:
            self.worker.pause() if paused else self.worker.resume()

    def stop_training(self) -> None:
        if self.worker:
            self.training.status.setText("Stopping after this step and saving a checkpoint…")
            self.worker.stop()

    def _on_finished(self, e: Finished) -> None:
        self._run_ended = True
        self.training.on_finished(e)
        self.runs.refresh()

    def _on_failed(self, e: Failed) -> None:
        self._run_ended = True
        self.training.on_failed(e)
        self.runs.refresh()
        if not self._close_after_stop:
            self.show_error(e)

    def show_error(self, failure: Failed) -> None:
        box = QMessageBox(QMessageBox.Icon.Warning, "Training stopped", failure.message, parent=self)
        if failure.problems:
            box.setInformativeText("\n".join(failure.problems))
        if failure.details:
            box.setDetailedText(failure.details)
        self.error_dialog = box
        box.open()  # window-modal, never blocks the event loop

    def _on_thread_done(self) -> None:
        self.worker = None
        self.training.set_running(False)
        self._refresh()
        if self.tabs.currentWidget() is self.playground:
            self.playground.refresh()
        if self._close_after_stop:
            self.close()

    # ------------------------------------------------------------ after training

    def _on_tab_changed(self, index: int) -> None:
        if self.tabs.widget(index) is not self.playground:
            return
        if self.worker is None:
            self.playground.refresh()  # loads a model only when the choice differs from the loaded one
        elif not self.playground.loaded_label:
            self.playground.status.setText("Training is running: the playground loads a model when it ends "
                                           "(or pick a run in the Runs tab and press Try in Playground).")

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

    def _remember(self) -> None:
        save_window_state(self)

    def _restore(self) -> None:
        restore_window_state(self)

    def closeEvent(self, event) -> None:
        if self.worker is not None and self._run_ended:
            self.worker.wait()  # the run has ended; its thread is only returning
            self.worker = None
        if self.worker is not None:
            if not self._close_after_stop:
                if not self.confirm("Training is running", "Stop training, save a checkpoint and quit?"):
                    event.ignore()
                    return
                self._close_after_stop = True
                self.stop_training()
            event.ignore()  # closes for real once the worker has saved and finished
            return
        self._remember()
        self.playground.shutdown()
        for thread in running_threads():  # an evaluation or a fuse finishes writing its files first
            thread.wait()
        super().closeEvent(event)
