"""The playground's worker: one long-lived thread that owns the loaded model and generates with it.

The model stays loaded between prompts, in the thread that loaded it (MLX
streams are per thread). The GUI sends commands through a queue; the worker
posts typed events (playground_events, and the core's PromptSample and
GenerationUpdate), which EventWorker delivers on the GUI thread. A generation
stops between tokens when Stop is pressed or when a newer load or generate
command has been sent: commands carry a sequence number, and the generation
compares its own with the latest ones.
"""

from __future__ import annotations

import queue
import traceback
from typing import Any

from PySide6.QtCore import QObject

from .event_worker import EventWorker
from .playground_events import CommandFailed, Idle, ModelLoaded, ModelUnloaded, PromptShown

BUSY_COMMANDS = ("load", "generate", "unload")  # each keeps the worker busy until its Idle
NO_DATA_NOTE = "the run does not name its data"


class GenerationWorker(EventWorker):
    """Commands: load, unload, format, generate, sample (the `_do_*` methods)."""

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self._commands: queue.SimpleQueue = queue.SimpleQueue()
        self._closed = False
        self._sent = 0  # sequence number of the latest command sent
        self._stopped_upto = 0  # generations with a number up to this one stop
        self._latest_heavy = 0  # the latest load or generate: it supersedes any generation before it
        self.busy = False  # set on the GUI thread when a command is sent, cleared when the last one's Idle is delivered
        self._unfinished = 0  # busy commands sent whose Idle is not delivered yet
        self._loaded = None
        self._adapter = None
        self._samples = None
        self._vision = None  # a vision-language model with its adapter (vision_answer.VisionModel)

    # ------------------------------------------------------------ GUI thread

    def send(self, command: str, **args: Any) -> None:
        if self._closed:
            return
        if not self.isRunning():
            self.start()
        self._sent += 1
        if command in BUSY_COMMANDS:
            self.busy = True
            self._unfinished += 1
            self._latest_heavy = self._sent  # a running generation stops for it
        self._commands.put((command, self._sent, args))

    def stop_generation(self) -> None:
        self._stopped_upto = self._sent

    def stop(self) -> None:
        """End the thread: a generation stops at its next token; a model load finishes first."""
        super().stop()
        self._unfinished = 0  # the commands queued behind the stop are dropped, their Idles never come
        self._commands.put(("wake", 0, {}))  # the loop waits for a command; this one only wakes it to see the stop

    def shutdown(self) -> None:
        """Stop, wait for the thread to end and deliver its last events (the window is closing)."""
        self._closed = True
        if self.isRunning():
            self.stop()
            self.wait()
        self._deliver_remaining()

    def _deliver(self, event: object) -> None:
        if isinstance(event, Idle):  # a load's Idle with a generation queued behind it: still busy
            self._unfinished = max(self._unfinished - 1, 0)
            self.busy = self._unfinished > 0
        super()._deliver(event)

    # ------------------------------------------------------------ worker thread

    def run(self) -> None:
        while True:
            command, seq, args = self._commands.get()
            if self.isInterruptionRequested():
                return  # commands still queued behind the stop are dropped
            if command == "wake":
                continue  # the wake-up of a stop seen before it, left for a restarted thread
            if command == "generate":
                args["should_stop"] = lambda seq=seq: (
                    self.isInterruptionRequested() or self._stopped_upto >= seq or self._latest_heavy > seq
                )
            try:
                getattr(self, f"_do_{command}")(**args)
            except Exception as e:  # shown in the playground; the thread lives on for the next command
                from ...core.errors import UserError

                details = "" if isinstance(e, UserError) else traceback.format_exc()
                self.post(CommandFailed(command, str(e) or type(e).__name__, details))
            if command in BUSY_COMMANDS:
                self.post(Idle())

    def _do_load(self, adapter_path: str, model: str | None = None) -> None:
        from ...core.inference.adapters import load_with_adapter, read_adapter
        from ...core.inference.samples import ValidationSamples
        from ...core.model.demo_model import has_random_weights

        self._loaded = self._vision = None
        adapter = read_adapter(adapter_path)
        if adapter.config.get("data_format") == "vision":
            self._load_vision(adapter, model)
            return
        loaded = load_with_adapter(model, adapter)
        self._loaded, self._adapter = loaded, adapter
        self._samples = ValidationSamples.of_run(adapter.config)
        self.post(
            ModelLoaded(
                adapter.label,
                str(loaded.path),
                adapter.uses_template,
                has_random_weights(loaded.path),
                len(self._samples) if self._samples else 0,
                self._samples.error if self._samples else NO_DATA_NOTE,
            )
        )

    def _load_vision(self, adapter, model: str | None) -> None:
        from ...core.inference.adapters import base_model_of
        from ...core.inference.vision_answer import load_vision_model
        from ...core.model.demo_model import has_random_weights

        base = base_model_of(adapter, model)
        self._vision, self._adapter, self._samples = load_vision_model(base, adapter.path), adapter, None
        note = "drop a picture on the left"
        self.post(ModelLoaded(adapter.label, str(base), True, has_random_weights(base), 0, note, vision=True))

    def _do_unload(self) -> None:
        """Free the model (training is about to need the memory)."""
        import gc

        import mlx.core as mx

        self._loaded = self._adapter = self._samples = self._vision = None
        gc.collect()
        mx.clear_cache()
        self.post(ModelUnloaded())

    def _do_format(
        self, prompt: str, system: str, template: bool, history: list | None = None, image: str = ""
    ) -> None:
        from ...core.inference.generation import format_prompt, template_note

        if self._vision is not None:
            from ...core.inference.vision_answer import prompt_text

            pictures = 1 if image else 0
            self.post(PromptShown(prompt_text(self._vision, prompt, pictures), f"chat template, {pictures} picture(s)"))
            return
        if self._loaded is None:
            return
        tok = self._loaded.tokenizer
        text = format_prompt(tok, prompt, system, template, history or ())
        self.post(PromptShown(text, template_note(tok, template)))

    def _do_sample(self) -> None:
        sample = self._samples.pick() if self._samples else None
        if sample is None:
            note = self._samples.error if self._samples else NO_DATA_NOTE
            self.post(CommandFailed("sample", f"no validation sample: {note}"))
            return
        self.post(sample)

    def _do_generate(
        self,
        prompt: str,
        system: str,
        template: bool,
        temperature: float,
        top_p: float,
        max_tokens: int,
        seed: int,
        should_stop,
        history: dict[str, list] | None = None,
        image: str = "",
    ) -> None:
        """Both sides answer; with `history` each side continues its own conversation (its own answers). A vision
        model answers about `image` (when given) with the prompt."""
        from ...core.inference.generation import (
            SIDES,
            SamplingSettings,
            format_prompt,
            generate_side_by_side,
            template_note,
        )

        if self._vision is not None:
            from ...core.inference.vision_answer import answer_side_by_side, prompt_text

            images = [image] if image else []
            self.post(PromptShown(prompt_text(self._vision, prompt, len(images)), f"{len(images)} picture(s)"))
            settings = SamplingSettings(temperature, top_p, max_tokens, seed)
            answer_side_by_side(self._vision, images, prompt, settings, self.post, should_stop)
            return
        if self._loaded is None:
            raise RuntimeError("no model is loaded yet; pick a run first")
        tok = self._loaded.tokenizer
        history = history or {}
        texts = {side: format_prompt(tok, prompt, system, template, history.get(side, ())) for side in SIDES}
        self.post(PromptShown(texts["adapter"], template_note(tok, template)))
        settings = SamplingSettings(temperature, top_p, max_tokens, seed)
        generate_side_by_side(self._loaded.model, tok, texts, settings, self.post, should_stop)
