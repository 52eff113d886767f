"""Help menu: the user guide (the README, by section) and the keyboard shortcuts the window really has."""

from __future__ import annotations

import re

from PySide6.QtCore import Qt, QUrl
from PySide6.QtGui import QAction, QImage, QKeySequence, QPixmap, QShortcut, QTextCursor, QTextDocument
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QListWidget,
    QTableWidget,
    QTableWidgetItem,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from ...core.resources import user_guide_text


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
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.setWindowTitle("QLoRA Studio — User guide")
        text, images = user_guide_text()
        self.sections = guide_sections(text)
        self.index = QListWidget()
        self.index.addItems([title for title, _ in self.sections])
        self.index.setFixedWidth(self.index.sizeHintForColumn(0) + 2 * self.index.frameWidth() + 12)
        self.page = QTextBrowser()
        self.page.setOpenExternalLinks(True)
        if images is not None:
            self.page.setSearchPaths([str(images)])  # the screenshots' relative paths
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
            self._fit_images()

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        super().resizeEvent(event)
        self._fit_images()

    def _fit_images(self) -> None:
        """Screenshots as wide as the page (their height follows), never wider than they are."""
        doc = self.page.document()
        width = max(self.page.viewport().width() - 24, 200)
        cursor = QTextCursor(doc)
        block = doc.begin()
        while block.isValid():
            it = block.begin()
            while not it.atEnd():
                fragment = it.fragment()
                if fragment.isValid() and fragment.charFormat().isImageFormat():
                    image_format = fragment.charFormat().toImageFormat()
                    image = doc.resource(QTextDocument.ResourceType.ImageResource.value, QUrl(image_format.name()))
                    natural = image.width() if isinstance(image, (QImage, QPixmap)) else width
                    image_format.setWidth(min(width, natural or width))
                    cursor.setPosition(fragment.position())
                    cursor.setPosition(fragment.position() + fragment.length(), QTextCursor.MoveMode.KeepAnchor)
                    cursor.setCharFormat(image_format)
                it += 1
            block = block.next()


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
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
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
