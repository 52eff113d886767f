"""The menu bar, read like the app: File, Run, View, Help. Each action calls into the window and its tabs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QMainWindow, QMenu, QMessageBox

from .. import __version__
from ..core.app_log import log_dir
from . import theme
from .desktop import open_folder
from .dialogs.help_dialogs import ShortcutsDialog, UserGuideDialog


def _action(
    window: QMainWindow,
    menu: QMenu,
    text: str,
    slot: Callable[..., Any],
    shortcut: QKeySequence.StandardKey | str | None = None,
) -> QAction:
    a = QAction(text, window)
    a.triggered.connect(slot)
    if shortcut:
        a.setShortcut(QKeySequence(shortcut))
    menu.addAction(a)
    return a


def build_menus(window: Any) -> tuple[QAction, QAction]:
    """Fill the window's menu bar; returns the Start training and Dark theme actions, whose state changes."""
    bar = window.menuBar()
    data, model, settings, runs = window.dataset, window.model, window.settings_panel, window.runs
    file_menu = bar.addMenu("&File")
    _action(window, file_menu, "Open dataset file…", data.browse_file, QKeySequence.StandardKey.Open)
    _action(window, file_menu, "Open data folder…", data.browse_folder)
    _action(window, file_menu, "Open model folder…", model.browse)
    file_menu.addSeparator()
    _action(window, file_menu, "Load settings…", settings.load)
    _action(window, file_menu, "Save settings…", settings.save)
    _action(window, file_menu, "Copy CLI command", settings.copy_command)
    file_menu.addSeparator()
    _action(window, file_menu, "Quit", window.close, QKeySequence.StandardKey.Quit)

    run_menu = bar.addMenu("&Run")
    start = _action(window, run_menu, "Start training", window.start_training, "Ctrl+R")
    _action(window, run_menu, "Stop and save", window.stop_training, "Ctrl+.")
    run_menu.addSeparator()
    # These press the Runs tab's buttons, so they follow the buttons' rules (click() does nothing while a button
    # is disabled): one run selected, and never evaluating or exporting the run that is training.
    _action(window, run_menu, "Try the selected run in the Playground", lambda: runs.try_button.click())
    _action(window, run_menu, "Evaluate the selected run", lambda: runs.eval_button.click())
    _action(window, run_menu, "Fuse && export the selected run…", lambda: runs.export_button.click())

    view_menu = bar.addMenu("&View")
    dark = _action(window, view_menu, "Dark theme", lambda on: window.set_dark(on))
    dark.setCheckable(True)
    # macOS: System Settings > Appearance decides, and the app follows it live (theme.SystemAppearance).
    dark.setVisible(not theme.FOLLOWS_SYSTEM)
    view_menu.menuAction().setVisible(not theme.FOLLOWS_SYSTEM)

    help_menu = bar.addMenu("&Help")
    _action(
        window, help_menu, "User guide", lambda: UserGuideDialog(window).show(), QKeySequence.StandardKey.HelpContents
    )
    _action(window, help_menu, "Keyboard shortcuts", lambda: ShortcutsDialog(window).show())  # each deletes itself
    _action(window, help_menu, "Open log folder", lambda: open_folder(log_dir(), window))
    _action(
        window,
        help_menu,
        "About QLoRA Studio",
        lambda: QMessageBox.about(
            window, "QLoRA Studio", f"QLoRA Studio {__version__}\nFine-tune local LLMs with QLoRA on MLX."
        ),
    )
    return start, dark
