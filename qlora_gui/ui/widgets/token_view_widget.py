"""A row as the model sees it: trained tokens highlighted, masked ones grey, each token's bounds on hover."""

from __future__ import annotations

from bisect import bisect_right

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QPalette, QTextCharFormat, QTextCursor
from PySide6.QtWidgets import QGroupBox, QHBoxLayout, QLabel, QSpinBox, QTextEdit, QToolTip, QVBoxLayout, QWidget

from ...core.data.intake import RawSplit
from ...core.data.token_view import PICTURE_MARK, TokenView
from ..workers.data_jobs import row_view
from ..workers.jobs import start_job

# (light palette, dark palette): two shades alternate so neighbouring trained tokens stay apart.
_TRAINED = ((QColor("#b7e4c7"), QColor("#74c69d")), (QColor("#1e5c3a"), QColor("#2d8a57")))
_MASKED = QColor("#8b949e")
_CUT = QColor("#e5534b")
_PICTURE = QColor("#6e7bd9")  # a picture's tokens: never trained, shown as one block with their count


class _TokenText(QTextEdit):
    """Read-only text that knows where each token starts, for the hover tooltip and outline."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setReadOnly(True)
        self.setMouseTracking(True)
        self.viewport().setMouseTracking(True)
        self.starts: list[int] = []
        self.ends: list[int] = []
        self.view: TokenView | None = None
        self.hovered = -1

    def token_at(self, position: int) -> int:
        i = bisect_right(self.starts, position) - 1
        return i if 0 <= i < len(self.ends) and position < self.ends[i] else -1

    def mouseMoveEvent(self, event) -> None:
        super().mouseMoveEvent(event)
        i = self.token_at(self.cursorForPosition(event.position().toPoint()).position())
        if i == self.hovered:
            return
        self.hovered = i
        self.setExtraSelections([])
        if i < 0 or self.view is None:
            QToolTip.hideText()
            return
        outline = QTextEdit.ExtraSelection()
        cursor = QTextCursor(self.document())
        cursor.setPosition(self.starts[i])
        cursor.setPosition(self.ends[i], QTextCursor.MoveMode.KeepAnchor)
        fmt = QTextCharFormat()
        fmt.setUnderlineStyle(QTextCharFormat.UnderlineStyle.SingleUnderline)
        fmt.setUnderlineColor(QColor("#1f6feb"))
        fmt.setFontUnderline(True)
        outline.cursor, outline.format = cursor, fmt
        self.setExtraSelections([outline])
        QToolTip.showText(event.globalPosition().toPoint(), self.describe(i), self)

    def describe(self, i: int) -> str:
        piece = self.view.pieces[i]
        state = (
            "dropped by truncation"
            if not piece.kept
            else "first token: never a target"
            if i == 0
            else f"a picture's {piece.tokens} tokens: never trained"
            if piece.text.startswith(PICTURE_MARK)
            else "trained"
            if piece.trained
            else "masked"
        )
        return f"token {i + 1} of {len(self.view.pieces)} · id {piece.id} · {piece.text!r} · {state}"


class TokenViewWidget(QWidget):
    """Shows one `TokenView`, or a sentence saying why there is none."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.summary = QLabel("Select a row to see it as the model sees it.")
        self.summary.setWordWrap(True)
        self.text = _TokenText()
        self.text.setToolTip("")
        legend = QLabel(
            "<span style='background:#b7e4c7;color:black'>&nbsp;trained&nbsp;</span> "
            "<span style='color:#8b949e'>masked</span> · "
            "<span style='color:#e5534b'>✂</span> cut at max_seq_length · hover a token for its bounds"
        )
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.summary)
        layout.addWidget(self.text, 1)
        self.picture_legend = QLabel(
            "<span style='background:#6e7bd9;color:white'>&nbsp;▣ picture · N tokens&nbsp;</span> "
            "a picture's tokens, in one block: the model sees them, never learns to write them"
        )
        self.picture_legend.hide()  # shown for rows with pictures
        layout.addWidget(legend)
        layout.addWidget(self.picture_legend)

    def show_message(self, message: str) -> None:
        self.text.view = None
        self.text.starts, self.text.ends = [], []
        self.text.clear()
        self.summary.setText(message)
        self.picture_legend.hide()

    def show_view(self, view: TokenView) -> None:
        self.text.view = view
        self.text.hovered = -1
        self.text.clear()
        self.text.setExtraSelections([])
        dark = self.palette().color(QPalette.ColorRole.Base).lightness() < 128
        shades = _TRAINED[1 if dark else 0]
        cursor = QTextCursor(self.text.document())
        starts, ends = [], []
        for i, piece in enumerate(view.pieces):
            if not piece.kept and (i == 0 or view.pieces[i - 1].kept):
                mark = QTextCharFormat()
                mark.setForeground(_CUT)
                mark.setFontWeight(700)
                cursor.insertText(f"✂ cut at max_seq_length={view.max_seq_length} ", mark)
            fmt = QTextCharFormat()
            if not piece.kept:
                fmt.setForeground(_MASKED)
                fmt.setFontStrikeOut(True)
            elif piece.tokens > 1 or piece.text.startswith(PICTURE_MARK):  # a picture's tokens, as one block
                fmt.setBackground(_PICTURE)
                fmt.setForeground(QColor("white"))
            elif piece.trained and i > 0:
                fmt.setBackground(shades[i % 2])
                fmt.setForeground(QColor("white" if dark else "black"))
            else:
                fmt.setForeground(_MASKED)
            starts.append(cursor.position())
            cursor.insertText(piece.text.replace("\n", "↵\n"), fmt)
            ends.append(cursor.position())
        self.text.starts, self.text.ends = starts, ends
        self.text.moveCursor(QTextCursor.MoveOperation.Start)
        self.summary.setText(view.summary())
        self.picture_legend.setVisible(bool(view.pictures))
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)


class TokenViewBox(QGroupBox):
    """The Data tab's token view: a line to show, encoded off the GUI thread, newest request wins."""

    shown = Signal()  # a new row is shown (or a sentence says why none can be)

    def __init__(self, parent=None):
        super().__init__("Token view: the row as the model sees it", parent)
        self.line = QSpinBox(minimum=1, maximum=1)
        self.line.setToolTip("Line of the data file to show as the model sees it")
        self.line.valueChanged.connect(self.show_line)
        self.view = TokenViewWidget()
        pick = QHBoxLayout()
        pick.addWidget(QLabel("Line:"))
        pick.addWidget(self.line)
        pick.addStretch(1)
        layout = QVBoxLayout(self)
        layout.addLayout(pick)
        layout.addWidget(self.view, 1)
        self._source: tuple[dict[str, RawSplit], str | None, int, bool] = ({}, None, 2048, False)
        self._generation = 0

    def set_source(
        self, splits: dict[str, RawSplit], model: str | None, max_seq_length: int, mask_prompt: bool
    ) -> None:
        """New checked rows (and the settings they were checked with): show the chosen line again."""
        if {s.file for s in splits.values()} != {s.file for s in self._source[0].values()}:
            self.view.show_message("")  # another dataset: never its predecessor's row while this one's encodes
        self._source = (splits, model, max_seq_length, mask_prompt)
        lines = [line for split in splits.values() for line in split.lines]
        if not lines:
            self.view.show_message("No rows to show.")
            return
        self.line.blockSignals(True)
        self.line.setRange(min(lines), max(lines))
        self.line.blockSignals(False)
        self.show_line(self.line.value())

    def select_line(self, line: int) -> None:
        if self.line.value() != line:
            self.line.setValue(line)  # valueChanged shows it
        else:
            self.show_line(line)

    def show_line(self, line: int) -> None:
        self._generation += 1
        generation = self._generation
        splits, model, max_seq_length, mask_prompt = self._source
        if not splits:
            return
        if not model:
            self.view.show_message(
                "Pick a model (tab 2) to see each row as its tokens: what is trained and what is masked."
            )
            return
        self.view.summary.setText(f"Encoding line {line}…")
        start_job(
            row_view,
            splits,
            line,
            model,
            max_seq_length,
            mask_prompt,
            on_done=lambda view: self._on_view(generation, view),
            on_failed=lambda msg, details: self._on_view(generation, None, msg),
        )

    def _on_view(self, generation: int, view: TokenView | None, message: str = "") -> None:
        if generation != self._generation:
            return  # a newer request superseded this one
        if view is None:
            self.view.show_message(message)
        else:
            self.view.show_view(view)
        self.shown.emit()
