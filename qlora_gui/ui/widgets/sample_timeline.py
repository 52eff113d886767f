"""Sample answers by step: scrub through the steps; each prompt's answer at that step beside its reference."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QScrollArea,
    QSlider,
    QTableWidget,
    QTableWidgetItem,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ...core.events import SampleAnswers

MATCH_COLOUR = QColor(80, 180, 110, 90)  # a cell whose answer gives the reference; light enough for dark mode too
SNIPPET = 24  # characters of an answer shown in the overview's cells
EMPTY_TEXT = (
    "No sample answers yet. The model answers a few prompts at the start, at each validation and at the end "
    "(Settings › Sample answers); they appear here, step by step."
)


EMPTY_ANSWER = "(no text: the model ended its answer at once, or wrote only spaces)"


def _text_box(text: str = "") -> QPlainTextEdit:
    box = QPlainTextEdit(text, readOnly=True)
    box.setLineWrapMode(QPlainTextEdit.LineWrapMode.WidgetWidth)
    box.setMinimumHeight(54)
    return box


def matches(answer: str, reference: str) -> bool:
    """The answer gives the reference (and may go on after it, as a short greedy answer often does)."""
    ref = " ".join(reference.split())
    return bool(ref) and " ".join(answer.split()).startswith(ref)


class PromptPanel(QGroupBox):
    """One prompt: its text, the answer at the chosen step and the reference."""

    def __init__(self, number: int, sample: dict[str, Any]):
        super().__init__(f"Prompt {number} · {sample.get('source', '')}")
        self.prompt = _text_box(sample["prompt"])
        self.prompt.setMaximumHeight(84)
        self.answer = _text_box()
        self.answer.setPlaceholderText(EMPTY_ANSWER)
        self.reference = _text_box(sample.get("reference") or "(no reference: the row has no answer)")
        self.answer_title = QLabel("Answer")
        self.verdict = QLabel("")
        grid = QGridLayout(self)
        grid.addWidget(self.prompt, 0, 0, 1, 2)
        grid.addWidget(self.answer_title, 1, 0)
        grid.addWidget(QLabel("Reference"), 1, 1)
        grid.addWidget(self.answer, 2, 0)
        grid.addWidget(self.reference, 2, 1)
        grid.addWidget(self.verdict, 3, 0, 1, 2)

    def show_answer(self, step: int, sample: dict[str, Any]) -> None:
        answer, reference = sample.get("answer", ""), sample.get("reference", "")
        self.answer_title.setText(f"Answer at step {step}" + (" (the base, before training)" if step == 0 else ""))
        self.answer.setPlainText(answer)
        notes = [f"{sample.get('tokens', 0)} tokens"]
        if sample.get("finish") == "length":
            notes.append("cut at the answer length")
        if reference:
            notes.append("matches the reference" if matches(answer, reference) else "differs from the reference")
        if isinstance(sample.get("reward"), (int, float)):  # a GRPO run scores its sample answers too
            notes.append(f"reward {sample['reward']:.3f}")
        self.verdict.setText(" · ".join(notes))


class AnswerGrid(QTableWidget):
    """The overview: a row per prompt, a column per step, each cell the start of that answer (green where it
    gives the reference). Clicking a cell shows that step below."""

    def __init__(self) -> None:
        super().__init__()
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectColumns)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.verticalHeader().setDefaultSectionSize(22)
        self.horizontalHeader().setDefaultSectionSize(150)

    def show_answers(self, steps: list[int], answers: dict[int, tuple[list[dict[str, Any]], float]]) -> None:
        rows = max((len(a) for a, _ in answers.values()), default=0)
        self.setRowCount(rows)
        self.setColumnCount(len(steps))
        self.setVerticalHeaderLabels([f"Prompt {i}" for i in range(1, rows + 1)])
        self.setHorizontalHeaderLabels([f"step {s}" for s in steps])
        bar = self.horizontalScrollBar().sizeHint().height()  # room for it: many steps scroll sideways
        self.setFixedHeight(self.horizontalHeader().sizeHint().height() + 22 * rows + 2 * self.frameWidth() + bar)
        for col, step in enumerate(steps):
            for row, sample in enumerate(answers[step][0]):
                text = " ".join(sample.get("answer", "").split())
                item = QTableWidgetItem(text[:SNIPPET] + ("…" if len(text) > SNIPPET else "") or "(no text)")
                item.setToolTip(sample.get("answer", "") if text else EMPTY_ANSWER)
                if not text:  # an answer that ended at once (or only spaces): said, not a blank cell
                    item.setForeground(QBrush(QColor(128, 128, 128)))
                if matches(sample.get("answer", ""), sample.get("reference", "")):
                    item.setBackground(QBrush(MATCH_COLOUR))
                self.setItem(row, col, item)


class SampleTimeline(QWidget):
    """Answers of each evaluation, kept by step. New answers move the view along while it shows the newest."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self._steps: list[int] = []
        self._answers: dict[int, tuple[list[dict[str, Any]], float]] = {}
        self._panels: list[PromptPanel] = []
        self._prompts: list[str] = []  # the prompts as given: a text box's text differs (U+00A0 becomes a space)
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setPageStep(1)
        self.slider.setToolTip("Scrub through the steps at which the model answered")
        self.slider.valueChanged.connect(self._show_index)
        self.back, self.forward = QToolButton(text="◀"), QToolButton(text="▶")
        self.back.setToolTip("Earlier answers")
        self.forward.setToolTip("Later answers")
        self.back.clicked.connect(lambda: self.slider.setValue(self.slider.value() - 1))
        self.forward.clicked.connect(lambda: self.slider.setValue(self.slider.value() + 1))
        self.step_label = QLabel("")
        self.empty = QLabel(EMPTY_TEXT)
        self.empty.setWordWrap(True)
        bar = QHBoxLayout()
        bar.addWidget(self.back)
        bar.addWidget(self.slider, 1)
        bar.addWidget(self.forward)
        bar.addWidget(self.step_label)
        self.grid = AnswerGrid()
        self.grid.cellClicked.connect(lambda _row, col: self.slider.setValue(col))
        self.panels_host = QWidget()
        self.panels_layout = QVBoxLayout(self.panels_host)
        self.panels_layout.setContentsMargins(0, 0, 0, 0)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.panels_host)
        layout = QVBoxLayout(self)
        layout.addLayout(bar)
        layout.addWidget(self.empty)
        layout.addWidget(self.grid)
        layout.addWidget(scroll, 1)
        self.clear()

    @property
    def steps(self) -> list[int]:
        return list(self._steps)

    @property
    def panels(self) -> list[PromptPanel]:
        """One panel per sample prompt, showing the answer at the chosen step."""
        return list(self._panels)

    def clear(self) -> None:
        self._steps, self._answers = [], {}
        for panel in self._panels:
            panel.deleteLater()
        self._panels, self._prompts = [], []
        self.grid.show_answers([], {})
        self._sync_controls()

    def add(self, step: int, answers: list[dict[str, Any]], seconds: float) -> None:
        """One evaluation's answers. A step seen before (a run that went back after a divergence) is replaced."""
        prompts = [a.get("prompt", "") for a in answers]
        if self._panels and self._prompts != prompts:
            self.clear()  # another run's prompts: start its timeline afresh
        at_newest = not self._steps or self.slider.value() == len(self._steps) - 1
        if not self._panels:
            self._prompts = prompts
            self._panels = [PromptPanel(i, a) for i, a in enumerate(answers, 1)]
            for panel in self._panels:
                self.panels_layout.addWidget(panel)
        if step not in self._answers:
            self._steps = sorted([*self._steps, step])
        self._answers[step] = (answers, seconds)
        self.grid.show_answers(self._steps, self._answers)
        self._sync_controls()
        if at_newest:
            self.slider.setValue(len(self._steps) - 1)
        self._show_index(self.slider.value())

    def keep_up_to(self, step: int) -> None:
        """Training goes on from `step` (a resume from its checkpoint): the answers of later steps leave."""
        if not any(s > step for s in self._steps):
            return
        self._steps = [s for s in self._steps if s <= step]
        self._answers = {s: a for s, a in self._answers.items() if s <= step}
        self.grid.show_answers(self._steps, self._answers)
        self._sync_controls()
        self.slider.setValue(len(self._steps) - 1)
        self._show_index(self.slider.value())

    def set_events(self, events: list[SampleAnswers]) -> None:
        """A run's answers so far, as metrics.jsonl keeps them."""
        self.clear()
        for e in events:
            self.add(e.step, e.answers, e.seconds)

    def _sync_controls(self) -> None:
        n = len(self._steps)
        self.slider.blockSignals(True)
        self.slider.setRange(0, max(n - 1, 0))
        self.slider.blockSignals(False)
        for w in (self.slider, self.back, self.forward):
            w.setEnabled(n > 1)
        self.empty.setVisible(n == 0)
        self.grid.setVisible(n > 0)
        self.panels_host.setVisible(n > 0)
        if n == 0:
            self.step_label.setText("")

    def _show_index(self, index: int) -> None:
        if not self._steps:
            return
        step = self._steps[index]
        answers, seconds = self._answers[step]
        self.step_label.setText(f"step {step} · {index + 1} of {len(self._steps)} · answered in {seconds:.1f} s")
        for panel, sample in zip(self._panels, answers, strict=False):
            panel.show_answer(step, sample)
        self.grid.selectColumn(index)
        self.grid.scrollTo(self.grid.model().index(0, index))
