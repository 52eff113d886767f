"""The Runs tab's filing actions: rename a run, write notes on it, move it to the trash.

A mixin for RunsView: it uses the view's selected_run(), busy_run(), refresh(), select_runs() and summary.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import QInputDialog, QMessageBox

from ...core.errors import UserError
from ...core.runs.run_admin import read_notes, rename_run, write_notes
from ...core.runs.run_lock import folder_owner, in_use_message
from ..desktop import move_to_trash


class RunFiling:
    def _ask_rename(self) -> None:
        run = self.selected_run()
        if not run:
            return
        name, ok = QInputDialog.getText(self, "Rename run", "New name for the run folder:", text=Path(run).name)
        if ok:
            self.rename_selected(name)

    def rename_selected(self, name: str) -> None:
        run = self.selected_run()
        if not run or self.busy_run() == run:
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
        text, ok = QInputDialog.getMultiLineText(
            self,
            f"Notes — {Path(run).name}",
            "Notes on this run (saved in its folder as notes.md):",
            read_notes(Path(run)),
        )
        if ok:
            self.set_notes(text)

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
        if not run or self.busy_run() == run:
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
