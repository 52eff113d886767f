"""On launch: a run that was cut off (crash, kill, power loss) is named, with Resume and Dismiss."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QMessageBox, QWidget

from ...core.runs.run_admin import interrupted_runs

DISMISSED_KEY = "dismissed_interrupted_runs"


def offer_resume(parent: QWidget, runs_root, store: QSettings, resume: Callable[[str], None]) -> QMessageBox | None:
    """Show a non-blocking question about the newest cut-off run not dismissed before; None when there is none."""
    dismissed = set(store.value(DISMISSED_KEY, []) or [])
    found = [(run, point) for run, point in interrupted_runs(runs_root) if str(run.path) not in dismissed]
    if not found:
        return None
    run, point = found[0]
    box = QMessageBox(
        QMessageBox.Icon.Warning,
        "A run was cut off",
        f"Training of “{run.name}” stopped at step {run.last_step} without finishing: the app or the "
        f"machine stopped while it ran. Its checkpoint at step {point.step} is intact.",
        parent=parent,
    )
    if len(found) > 1:
        box.setInformativeText(f"{len(found) - 1} more cut-off run(s) are in the Runs tab, each with Resume.")
    box.setObjectName("resume-offer")
    resume_button = box.addButton(f"Resume from step {point.step}", QMessageBox.ButtonRole.AcceptRole)
    dismiss_button = box.addButton("Dismiss", QMessageBox.ButtonRole.RejectRole)
    resume_button.clicked.connect(lambda: resume(str(point.path)))
    dismiss_button.clicked.connect(lambda: store.setValue(DISMISSED_KEY, sorted(dismissed | {str(run.path)})))
    box.open()  # window-modal, never blocks the event loop
    return box
