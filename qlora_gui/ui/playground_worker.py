"""The playground's worker: one long-lived thread that owns the loaded model and generates with it.

The model stays loaded between prompts, in the thread that loaded it (MLX
streams are per thread). The GUI sends commands through a queue; the worker
answers with plain dicts on another queue, which a GUI-thread timer drains into
the `event` signal. A generation stops between tokens when Stop is pressed or
when a newer load or generate command has been sent: commands carry a
sequence number, and the generation compares its own with the latest ones.
"""

from __future__ import annotations

import queue
import traceback
from typing import Any

from PySide6.QtCore import QThread, QTimer, Signal, Slot

from .jobs import register

DRAIN_MS = 40


class GenerationWorker(QThread):
    """Commands: load, unload, format, generate, sample (the `_do_*` methods). Events: `event(dict)`."""

    event = Signal(dict)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._commands: queue.SimpleQueue = queue.SimpleQueue()
        self._events: queue.SimpleQueue = queue.SimpleQueue()
        self._closed = False
        self._sent = 0  # sequence number of the latest command sent
        self._stopped_upto = 0  # generations with a number up to this one stop
        self._latest_heavy = 0  # the latest load or generate: it supersedes any generation before it
        self.busy = False  # set on the GUI thread when a command is sent, cleared on its "idle" event
        self._timer = QTimer(self)
        self._timer.setInterval(DRAIN_MS)
        self._timer.timeout.connect(self._drain)
        self.finished.connect(self._on_finished)
        register(self)
        self._loaded = None
        self._adapter = None
        self._samples = None

    # ------------------------------------------------------------ GUI thread

    def send(self, command: str, **args: Any) -> None:
        if self._closed:
            return
        if not self.isRunning():
            self._timer.start()
            self.start()
        self._sent += 1
        if command in ("load", "generate", "unload"):
            self.busy = True
            self._latest_heavy = self._sent  # a running generation stops for it
        self._commands.put((command, self._sent, args))

    def stop_generation(self) -> None:
        self._stopped_upto = self._sent

    def shutdown(self) -> None:
        """Stop any generation and end the thread (it finishes a model load first)."""
        self._closed = True
        self.stop_generation()
        if self.isRunning():
            self._commands.put(("quit", 0, {}))
            self.wait()
        self._timer.stop()
        self._drain()

    @Slot()
    def _drain(self) -> None:
        while True:
            try:
                payload = self._events.get_nowait()
            except queue.Empty:
                return
            if payload["kind"] == "idle":
                self.busy = False
            self.event.emit(payload)

    @Slot()
    def _on_finished(self) -> None:
        self._timer.stop()
        self._drain()

    # ------------------------------------------------------------ worker thread

    def _put(self, kind: str, **values: Any) -> None:
        self._events.put({"kind": kind, **values})

    def run(self) -> None:
        while True:
            command, seq, args = self._commands.get()
            if command == "quit":
                return
            if command == "generate":
                args["should_stop"] = lambda seq=seq: self._stopped_upto >= seq or self._latest_heavy > seq
            try:
                getattr(self, f"_do_{command}")(**args)
            except Exception as e:  # shown in the playground; the thread lives on for the next command
                from ..core.errors import UserError

                details = "" if isinstance(e, UserError) else traceback.format_exc()
                self._put("error", message=str(e) or type(e).__name__, details=details, command=command)
            if command in ("load", "generate", "unload"):
                self._put("idle")

    def _do_load(self, adapter_path: str, model: str | None = None) -> None:
        from ..core.demo_model import has_random_weights
        from ..core.inference import load_with_adapter, read_adapter
        from ..core.samples import ValidationSamples

        self._loaded = None
        self._put("loading", label=adapter_path)
        adapter = read_adapter(adapter_path)
        loaded = load_with_adapter(model, adapter)
        self._loaded, self._adapter = loaded, adapter
        cfg = adapter.config
        self._samples = ValidationSamples(cfg["data"], cfg.get("valid_fraction", 0.1), cfg.get("seed", 0)) \
            if cfg.get("data") else None
        self._put("loaded", label=adapter.label, model=str(loaded.path), template=adapter.uses_template,
                  random_weights=has_random_weights(loaded.path),
                  samples=len(self._samples) if self._samples else 0,
                  samples_note=self._samples.error if self._samples else "the run does not name its data")

    def _do_unload(self) -> None:
        """Free the model (training is about to need the memory)."""
        import gc

        import mlx.core as mx

        self._loaded = self._adapter = self._samples = None
        gc.collect()
        mx.clear_cache()
        self._put("unloaded")

    def _do_format(self, prompt: str, system: str, template: bool) -> None:
        from ..core.generation import format_prompt, template_note

        if self._loaded is None:
            return
        tok = self._loaded.tokenizer
        self._put("prompt", text=format_prompt(tok, prompt, system, template), note=template_note(tok, template))

    def _do_sample(self) -> None:
        sample = self._samples.pick() if self._samples else None
        if sample is None:
            note = self._samples.error if self._samples else "the run does not name its data"
            self._put("error", message=f"no validation sample: {note}", details="", command="sample")
            return
        self._put("sample", **sample.to_dict())

    def _do_generate(self, prompt: str, system: str, template: bool, temperature: float, top_p: float,
                     max_tokens: int, seed: int, should_stop) -> None:
        from ..core.generation import SamplingSettings, format_prompt, generate_side_by_side, template_note

        if self._loaded is None:
            raise RuntimeError("no model is loaded yet; pick a run first")
        tok = self._loaded.tokenizer
        text = format_prompt(tok, prompt, system, template)
        self._put("prompt", text=text, note=template_note(tok, template))
        settings = SamplingSettings(temperature, top_p, max_tokens, seed)

        def on_update(u) -> None:
            self._put("done" if u.done else "token", side=u.side, text=u.text, tokens=u.tokens,
                      tps=u.tokens_per_sec, reason=u.finish_reason)

        generate_side_by_side(self._loaded.model, tok, text, settings, on_update, should_stop)
