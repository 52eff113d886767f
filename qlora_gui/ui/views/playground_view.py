"""The playground: the base and the adapter answering side by side, live; one prompt, or a conversation in
which each side keeps its own answers."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QFont, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QCheckBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSplitter,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ...core.inference.generation import GenerationUpdate
from ...core.inference.samples import PromptSample
from ...core.runs.run_folder import checkpoint_step, run_of
from ..widgets.answer_pane import AnswerPane
from ..widgets.image_drop import ImageDrop
from ..widgets.run_picker import RunPicker
from ..widgets.sampling_box import SamplingBox
from ..workers.playground_events import CommandFailed, Idle, ModelLoaded, ModelUnloaded, PromptShown
from ..workers.playground_worker import GenerationWorker

PATH_ROLE = Qt.ItemDataRole.UserRole
RANDOM_WEIGHTS_NOTE = (
    " This base has random weights (the demo model): both sides answer with noise; it shows how "
    "the app works, not what a fine-tune learns. Pick a real model in the Model tab for that."
)
PANES = (("base", "Base model"), ("adapter", "With adapter"), ("reference", "Reference (validation set)"))
FINISH_REASONS = {"stop": "end of text", "length": "max tokens", "stopped": "stopped"}


def transcript(turns: list[dict[str, str]]) -> str:
    """A conversation as a pane shows it; ends where the next answer goes."""
    names = {"user": "You", "assistant": "Model"}
    return "".join(f"{names[t['role']]}: {t['content']}\n\n" for t in turns) + "Model: "


class PlaygroundView(QWidget):
    generation_done = Signal()

    def __init__(self, runs_root: Path, parent=None):
        super().__init__(parent)
        self.runs_root = Path(runs_root)
        self.worker = GenerationWorker(self)
        self.worker.event.connect(self._on_event)
        self.loaded_label = ""
        self.requested = ""  # the checkpoint loaded or being loaded
        self.generating = False
        self._stale = False  # the prompt changed while answers were streaming
        self._sampled_prompt = ""  # the reference pane belongs to this prompt
        self.turns: dict[str, list[dict[str, str]]] = {"base": [], "adapter": []}  # each side's conversation
        self._asked = ""  # the prompt being answered
        self.vision = False  # the loaded model sees pictures: the picture box shows beside the prompt
        self._answers: dict[str, str] = {"base": "", "adapter": ""}  # its answers so far

        self.picker = RunPicker(self.runs_root)
        self.picker.checkpoint_chosen.connect(self.load_selected)
        self.picker.refresh_requested.connect(self.refresh)
        self.status = QLabel("Pick a run to try its adapter.")
        self.status.setWordWrap(True)

        self.system = QLineEdit(placeholderText="optional system prompt")
        self.prompt = QPlainTextEdit(placeholderText="Type a prompt, or press “Sample from validation set”.")
        self.prompt.setMaximumHeight(110)
        self.template = QCheckBox("Apply the chat template (as in training)")
        self.template.setToolTip("On for runs trained on chat or prompt/completion rows, off for plain text rows.")
        self.conversation = QCheckBox("Keep the conversation")
        self.conversation.setToolTip(
            "Each prompt continues the conversation: the base and the adapter each see their own earlier "
            "answers, as in a chat. Needs the chat template."
        )
        self.conversation.toggled.connect(lambda _: self.new_conversation())
        self.new_button = QPushButton("New conversation")
        self.new_button.clicked.connect(self.new_conversation)
        self.template.toggled.connect(self._sync_conversation)
        self.sample_button = QPushButton("Sample from validation set")
        self.sample_button.clicked.connect(lambda: self.worker.send("sample"))
        self.sample_note = QLabel("")
        self.raw_toggle = QToolButton(text="Prompt as the model sees it", checkable=True)
        self.raw_toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.raw_toggle.setArrowType(Qt.ArrowType.RightArrow)
        self.raw_toggle.toggled.connect(self._toggle_raw)
        self.raw_prompt = QPlainTextEdit(readOnly=True)
        self.raw_prompt.setMaximumHeight(90)
        self.raw_prompt.setFont(QFont("Menlo, DejaVu Sans Mono, monospace"))
        self.raw_prompt.hide()
        self._format_timer = QTimer(self, singleShot=True, interval=250)
        self._format_timer.timeout.connect(self._send_format)
        for signal in (self.prompt.textChanged, self.system.textChanged, self.template.toggled):
            signal.connect(lambda *_: self._format_timer.start())
            signal.connect(self._clear_answers)  # answers to another prompt would sit beside this one

        self.image = ImageDrop()  # shown for vision-language models: the picture the prompt is about
        self.image.hide()
        self.image.changed.connect(lambda _: self._format_timer.start())
        self.image.changed.connect(self._clear_answers)

        sampling = self.sampling = SamplingBox()
        self.temperature, self.max_tokens = sampling.temperature, sampling.max_tokens

        self.generate_button = QPushButton("Generate")
        self.generate_button.setDefault(True)
        self.generate_button.setToolTip("Ctrl+Enter")
        self.generate_button.clicked.connect(self.generate)
        self.stop_button = QPushButton("Stop")
        self.stop_button.clicked.connect(self.stop)
        QShortcut(QKeySequence("Ctrl+Return"), self, activated=self.generate, whatsThis="Generate (Playground)")

        prompt_box = QVBoxLayout()
        prompt_box.addWidget(self.system)
        prompt_box.addWidget(self.prompt)
        row = QHBoxLayout()
        row.addWidget(self.template)
        row.addWidget(self.conversation)
        row.addWidget(self.new_button)
        row.addStretch(1)
        row.addWidget(self.sample_note)
        row.addWidget(self.sample_button)
        prompt_box.addLayout(row)
        prompt_box.addWidget(self.raw_toggle)
        prompt_box.addWidget(self.raw_prompt)
        buttons = QHBoxLayout()
        buttons.addWidget(self.generate_button)
        buttons.addWidget(self.stop_button)
        side = QVBoxLayout()
        side.addWidget(sampling)
        side.addLayout(buttons)
        side.addStretch(1)
        middle = QHBoxLayout()
        middle.addWidget(self.image)
        middle.addLayout(prompt_box, 1)
        middle.addLayout(side)

        self.panes = {key: AnswerPane(title) for key, title in PANES}
        answers = QSplitter(Qt.Orientation.Horizontal)
        for pane in self.panes.values():
            answers.addWidget(pane)
        self.panes["reference"].hide()

        layout = QVBoxLayout(self)
        layout.addWidget(self.picker)
        layout.addWidget(self.status)
        layout.addLayout(middle)
        layout.addWidget(answers, 1)
        self._sync_conversation(self.template.isChecked())
        self._update_buttons()

    # ------------------------------------------------------------ runs and loading

    def refresh(self) -> None:
        if not self.picker.refresh():
            self.status.setText(f"No runs with checkpoints in {self.runs_root} yet: train one first.")

    def select_run(self, run_dir: str, checkpoint: str | None = None) -> None:
        self.picker.refresh()
        if self.picker.select(run_dir, checkpoint):
            self.load_selected()

    def load_selected(self) -> None:
        path = self.picker.checkpoint
        if not path or path == self.requested:
            return
        self.requested = path
        self.loaded_label = ""
        self.new_conversation()  # another adapter: another conversation
        self.status.setText(f"Loading {run_of(path).name} @ step {checkpoint_step(path)}…")
        self.worker.send("load", adapter_path=path)
        self._update_buttons()

    # ------------------------------------------------------------ prompts and generation

    @property
    def in_conversation(self) -> bool:
        return self.conversation.isChecked() and self.conversation.isEnabled()

    def generate(self) -> None:
        if not self.loaded_label or self.worker.busy or not self.prompt.toPlainText().strip():
            return
        self._asked = self.prompt.toPlainText()
        self._answers = {"base": "", "adapter": ""}
        for key in ("base", "adapter"):
            self.panes[key].clear()
            if self.in_conversation:  # the conversation so far, then this prompt; the answer streams after it
                self.panes[key].append(transcript(self.turns[key] + [{"role": "user", "content": self._asked}]))
            self.panes[key].stats.setText("starting…")
        self.generating = True
        self.worker.send(
            "generate",
            prompt=self._asked,
            system=self.system.text(),
            template=self.template.isChecked(),
            history={side: list(turns) for side, turns in self.turns.items()} if self.in_conversation else None,
            **dataclasses.asdict(self.sampling.settings()),
            **({"image": self.image.path} if self.vision else {}),
        )
        self._update_buttons()

    def new_conversation(self) -> None:
        """Forget the turns so far: the next prompt starts afresh."""
        self.turns = {"base": [], "adapter": []}
        if not self.generating:
            for key in ("base", "adapter"):
                self.panes[key].clear()
        self._update_buttons()

    def _sync_conversation(self, template: bool) -> None:
        self.conversation.setEnabled(template and not self.vision)  # raw prompts have no turns to keep
        if not template:
            self.new_conversation()

    def _end_turn(self) -> None:
        """Each side's answer joins its conversation (a stopped answer as far as it got); the prompt box empties
        for the next turn."""
        for side in ("base", "adapter"):
            self.turns[side] += [
                {"role": "user", "content": self._asked},
                {"role": "assistant", "content": self._answers[side]},
            ]
        self.prompt.blockSignals(True)  # the answers stay: they are the conversation
        self.prompt.clear()
        self.prompt.blockSignals(False)

    def stop(self) -> None:
        self.worker.stop_generation()

    def _clear_answers(self, *_args) -> None:
        """The prompt changed: answers to the old one go (once generating ends, if it is under way), and so
        does a reference that belonged to the old one (a sampled prompt brings its own)."""
        if self.prompt.toPlainText() != self._sampled_prompt:
            self.panes["reference"].clear()
            self.panes["reference"].hide()
        if self.in_conversation:
            return  # the panes hold the conversation, not answers to the text being typed
        if self.generating:
            self._stale = True
            return
        self._stale = False
        for key in ("base", "adapter"):
            self.panes[key].clear()

    def _send_format(self) -> None:
        if self.raw_toggle.isChecked() and self.loaded_label:
            self.worker.send(
                "format",
                prompt=self.prompt.toPlainText(),
                system=self.system.text(),
                template=self.template.isChecked(),
                history=list(self.turns["adapter"]) if self.in_conversation else None,
                **({"image": self.image.path} if self.vision else {}),
            )

    def _toggle_raw(self, shown: bool) -> None:
        self.raw_toggle.setArrowType(Qt.ArrowType.DownArrow if shown else Qt.ArrowType.RightArrow)
        self.raw_prompt.setVisible(shown)
        self._send_format()

    def _update_buttons(self) -> None:
        ready = bool(self.loaded_label) and not self.worker.busy
        self.generate_button.setEnabled(ready)
        self.sample_button.setEnabled(bool(self.loaded_label))
        self.stop_button.setEnabled(self.generating)
        self.new_button.setVisible(self.in_conversation)
        self.new_button.setEnabled(any(self.turns.values()) and not self.generating)

    def _on_event(self, event: object) -> None:
        match event:
            case ModelLoaded():
                self.loaded_label = event.label
                self.vision = event.vision
                self.image.setVisible(event.vision)
                self.conversation.setEnabled(not event.vision and self.template.isChecked())
                if event.vision:  # one picture and one question; no conversation kept
                    self.conversation.setChecked(False)
                self.template.setChecked(event.uses_template)
                self.status.setText(
                    f"Ready: {Path(event.model).name} with the adapter of {event.label}. "
                    "Both sides share one copy of the base weights."
                    + (RANDOM_WEIGHTS_NOTE if event.random_weights else "")
                )
                self.sample_note.setText("" if event.samples else event.samples_note)
                self._send_format()
            case ModelUnloaded():
                self.status.setText(
                    "The model was unloaded to leave its memory to training; it loads again when "
                    "you come back to this tab."
                )
            case PromptShown():
                self.raw_prompt.setPlainText(event.text)
                self.raw_toggle.setText(f"Prompt as the model sees it ({event.note})")
            case PromptSample():
                self._sampled_prompt = event.prompt
                self.prompt.setPlainText(event.prompt)
                self.system.setText(event.system)
                pane = self.panes["reference"]
                pane.show()
                pane.text.setPlainText(event.reference)
                pane.stats.setText(f"{Path(event.file).name}:{event.line}")
            case GenerationUpdate():
                pane = self.panes[event.side]
                pane.append(event.text)
                if event.side in self._answers:
                    self._answers[event.side] += event.text
                what = FINISH_REASONS.get(event.finish_reason, "")
                pane.stats.setText(
                    f"{event.tokens} tokens · {event.tokens_per_sec:.1f} tokens/s" + (f" · {what}" if what else "")
                )
            case CommandFailed():
                if event.command == "load":
                    self.requested = ""  # picking it again retries
                self.status.setText(f"⚠ {event.message}")
                if event.details:
                    self.status.setToolTip(event.details)
        # The generation's own Idle: a load's, with the generation queued behind it, leaves the worker busy.
        finished_generating = isinstance(event, Idle) and self.generating and not self.worker.busy
        if finished_generating:
            self.generating = False
            if self.in_conversation:
                self._end_turn()
            elif self._stale:  # the prompt was edited while these answers streamed
                self._clear_answers()
        self._update_buttons()
        if finished_generating:
            self.generation_done.emit()

    def unload(self) -> None:
        """Give the memory back (training starts); the model loads again when the tab is next shown."""
        if not self.worker.isRunning() or not (self.loaded_label or self.requested):
            return
        self.loaded_label = self.requested = ""
        self.worker.send("unload")
        self._update_buttons()

    def shutdown(self) -> None:
        self._format_timer.stop()
        self.worker.shutdown()
