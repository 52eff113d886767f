"""The Runs tab's filing actions: add a run folder from elsewhere, rename a run, write notes on it, move it to
the trash.

A mixin for RunsView: it uses the view's selected_run(), busy_run(), refresh(), select_runs() and summary.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import QFileDialog, QInputDialog, QMessageBox, QPlainTextEdit

from ...core.errors import UserError
from ...core.runs.run_admin import read_notes, rename_run, write_notes
from ...core.runs.run_import import BaseModelNeeded, add_run_folder
from ...core.runs.run_lock import folder_owner, in_use_message
from ..desktop import move_to_trash


class RunFiling:
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
