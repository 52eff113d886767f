"""Help menu: the user guide (the README, by section) and the keyboard shortcuts the window really has."""

from __future__ import annotations

import re

from PySide6.QtGui import QAction, QKeySequence, QShortcut
from PySide6.QtWidgets import (QDialog, QDialogButtonBox, QHBoxLayout, QListWidget, QTableWidget,
                               QTableWidgetItem, QTextBrowser, QVBoxLayout, QWidget)

from ..core.resources import user_guide_path


def guide_sections(markdown: str) -> list[tuple[str, str]]:
    """(title, markdown) for the text before the first "## " heading and for each "## " section."""
    parts = re.split(r"^## ", markdown, flags=re.M)
    intro = ("Introduction", parts[0]) if parts[0].strip() else None
    sections = [(part.splitlines()[0].strip(), "## " + part) for part in parts[1:]]
    return ([intro] if intro else []) + sections


class UserGuideDialog(QDialog):
    """The README's sections in a list; the chosen one rendered beside it, screenshots included."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setWindowTitle("QLoRA Studio — User guide")
        path = user_guide_path()
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as e:
            text = f"The user guide could not be read from {path}: {e.strerror or e}."
        self.sections = guide_sections(text)
        self.index = QListWidget()
        self.index.addItems([title for title, _ in self.sections])
        self.index.setMaximumWidth(260)
        self.page = QTextBrowser()
        self.page.setOpenExternalLinks(True)
        self.page.setSearchPaths([str(path.parent)])  # the screenshots' relative paths
        self.index.currentRowChanged.connect(self._show)
        body = QHBoxLayout()
        body.addWidget(self.index)
        body.addWidget(self.page, 1)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(body, 1)
        layout.addWidget(buttons)
        self.resize(1000, 700)
        self.index.setCurrentRow(0)

    def _show(self, row: int) -> None:
        if 0 <= row < len(self.sections):
            self.page.setMarkdown(self.sections[row][1])


def window_shortcuts(window: QWidget) -> list[tuple[str, str]]:
    """(keys, what they do) for every menu action and shortcut the window holds, in menu order."""
    out = []
    for action in window.findChildren(QAction):
        keys = action.shortcut().toString(QKeySequence.SequenceFormat.NativeText)
        if keys and action.text():
            out.append((keys, action.text().replace("&&", "&").rstrip("…")))
    for shortcut in window.findChildren(QShortcut):
        keys = shortcut.key().toString(QKeySequence.SequenceFormat.NativeText)
        if keys and shortcut.whatsThis():
            out.append((keys, shortcut.whatsThis()))
    return out


class ShortcutsDialog(QDialog):
    def __init__(self, window: QWidget):
        super().__init__(window)
        self.setWindowTitle("Keyboard shortcuts")
        rows = window_shortcuts(window)
        self.table = QTableWidget(len(rows), 2)
        self.table.setHorizontalHeaderLabels(["Keys", "Action"])
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        for r, (keys, what) in enumerate(rows):
            self.table.setItem(r, 0, QTableWidgetItem(keys))
            self.table.setItem(r, 1, QTableWidgetItem(what))
        self.table.resizeColumnsToContents()
        self.table.horizontalHeader().setStretchLastSection(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.table)
        layout.addWidget(buttons)
        self.resize(460, 360)
