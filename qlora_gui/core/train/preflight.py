"""Measured preflight: the real model and settings, two optimizer steps on the longest rows, measured.

Nothing is saved. When the settings do not fit this machine's memory, real steps find what does: the
largest batch size, then gradient checkpointing, then a shorter max length. A setting whose formula
estimate is far over the limit is not tried (a step that does not fit could take the process down); the
app runs the whole preflight in a child process for the same reason.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlx.core as mx
import numpy as np

from ..config import TrainConfig
from ..data.batching import epoch_batches, eval_batches, make_batch, padded_width, planned_steps
from ..data.dataset import training_data
from ..data.encode import EncodedSplit
from ..data.hf_dataset import write_hf_dataset
from ..data.ragged import Ragged
from ..errors import UserError
from ..memory import GB, memory_budget
from ..model.grouped_lora import load_adapter_weights
from ..model.loader import adapter_weights, use_grad_checkpoint
from ..model.model_files import load_tokenizer, resolve_model_path
from ..model.vision_model import is_vision_model
from .estimate import estimate_memory
from .grpo import GrpoLoss
from .grpo_mode import full_length_batches
from .optimizer import build_optimizer
from .preference_mode import preference_loss
from .step import TrainStep
from .training_model import prepare_model

FAR_OVER = 2.0  # an estimate this many times the limit is not tried for real
SHORTEST = 64  # max lengths are not cut below this many tokens


@dataclass
class Trial:
    batch_size: int
    max_seq_length: int
    grad_checkpoint: bool
    peak_gb: float | None = None  # None: not tried
    seconds_per_step: float = 0.0
    tokens_per_sec: float = 0.0  # tokens of the longest rows (padding left out) per second
    note: str = ""

    def fits(self, limit_gb: float) -> bool:
        return self.peak_gb is not None and self.peak_gb <= limit_gb

    def settings(self) -> str:
        return f"batch {self.batch_size}, max length {self.max_seq_length}" + (
            ", gradient checkpointing" if self.grad_checkpoint else ""
        )


@dataclass
class PreflightResult:
    limit_gb: float
    total_steps: int
    trials: list[Trial] = field(default_factory=list)
    run_seconds: float | None = None  # the whole run at the chosen settings, validations included

    @property
    def chosen(self) -> Trial | None:
        """The settings as asked when they fit, else the first found that does."""
        return next((t for t in self.trials if t.fits(self.limit_gb)), None)

    @property
    def fits_as_set(self) -> bool:
        return bool(self.trials) and self.trials[0].fits(self.limit_gb)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> PreflightResult:
        trials = [Trial(**t) for t in values.get("trials", [])]
        return cls(values["limit_gb"], values["total_steps"], trials, values.get("run_seconds"))

    def to_text(self) -> str:
        lines = []
        for t in self.trials:
            measured = (
                (
                    f"peak {t.peak_gb:.2f} GB, {t.tokens_per_sec:,.0f} tokens/s, {t.seconds_per_step:.2f} s "
                    "per step on the longest rows"
                )
                if t.peak_gb is not None
                else t.note
            )
            verdict = "fits" if t.fits(self.limit_gb) else "over" if t.peak_gb is not None else "not tried"
            lines.append(f"  {t.settings()}: {measured} ({verdict})")
        head = f"Preflight: {self.total_steps} steps; this machine's limit {self.limit_gb:.2f} GB"
        chosen = self.chosen
        if chosen is None:
            tail = "Nothing tried fits: quantize the base (4 bits), adapt fewer layers or use a smaller model."
        elif self.fits_as_set:
            tail = f"The settings fit. The whole run: about {_duration(self.run_seconds)}."
        else:
            tail = f"To fit: {chosen.settings()}; the whole run then takes about {_duration(self.run_seconds)}."
        return "\n".join([head, *lines, tail])


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    minutes = seconds / 60
    return f"{seconds:.0f} s" if seconds < 120 else f"{minutes:.0f} min" if minutes < 120 else f"{minutes / 60:.1f} h"


def _longest_rows(split: EncodedSplit, batch_size: int, max_len: int, dpo: bool) -> EncodedSplit:
    """The batch_size longest rows (or pairs, both sides), cut to max_len: the largest batch the run will meet.
    DPO's reference is zero here: its values change no cost."""
    picked = np.argsort(-split.lengths, kind="stable")[:batch_size]
    rows = np.concatenate([picked, picked + split.pairs]) if split.pairs else picked
    tokens = [split.tokens[i][:max_len] for i in rows]
    out = EncodedSplit(
        Ragged.from_rows(tokens, np.int32),
        Ragged.from_rows([split.trained[i][:max_len] for i in rows], np.bool_),
        np.array([len(t) for t in tokens]),
        [split.lines[i] for i in rows],
        pairs=len(picked) if split.pairs else 0,
    )
    out.reference = np.zeros(len(rows), dtype=np.float32) if dpo else None
    return out


def _run_seconds(cfg: TrainConfig, data: dict[str, EncodedSplit], trial: Trial, total_steps: int) -> float:
    """Padded tokens the run will process, at the measured speed per padded token (a forward pass alone is
    about a third of a training step)."""
    seconds_per_token = trial.seconds_per_step / (trial.batch_size * padded_width(trial.max_seq_length))
    lengths = np.minimum(data["train"].lengths, trial.max_seq_length)
    batches = epoch_batches(lengths, trial.batch_size, cfg.seed, 0)
    per_batch = sum(len(idx) * padded_width(int(lengths[idx].max())) for idx in batches) / max(len(batches), 1)
    train = total_steps * cfg.grad_accumulation_steps * per_batch * seconds_per_token
    valid = data.get("valid")
    if valid is None:
        return train
    vlen = np.minimum(valid.lengths, trial.max_seq_length)
    order = eval_batches(vlen, trial.batch_size)
    order = order[: cfg.val_batches] if cfg.val_batches > 0 else order
    per_eval = sum(len(idx) * padded_width(int(vlen[idx].max())) for idx in order) * seconds_per_token / 3
    return train + (total_steps // cfg.steps_per_eval + 2) * per_eval


def preflight(cfg: TrainConfig, say: Callable[[str], None] = lambda _: None) -> PreflightResult:
    """Measure the settings on this machine; search for ones that fit when they do not."""
    cfg.validate()
    model_path = resolve_model_path(cfg.model)
    if is_vision_model(model_path):
        raise UserError(
            f"{model_path}: the preflight does not measure vision-language models yet; start the run instead: "
            "its first steps show the time per step and the memory"
        )
    tokenizer = load_tokenizer(model_path, cfg.trust_remote_code)
    say("checking the data")
    with tempfile.TemporaryDirectory() as scratch:  # an hf_dataset's rows, read as training will read them
        source = str(write_hf_dataset(cfg.hf_dataset, Path(scratch) / "data", cfg.test)) if cfg.hf_dataset else cfg.data
        _, data, _ = training_data(
            source, tokenizer, cfg.max_seq_length, cfg.mask_prompt, cfg.batch_size, cfg.valid_fraction, cfg.seed
        )
    train = data["train"]
    _, total_steps = planned_steps(train.rows, cfg.batch_size, cfg.grad_accumulation_steps, cfg.epochs, cfg.iters)
    limit = cfg.memory_limit_gb or memory_budget() / GB
    result = PreflightResult(limit, total_steps)
    say("loading the model")
    prepared = prepare_model(cfg, model_path, tokenizer, preference_loss(cfg))
    model, start = prepared.loaded.model, adapter_weights(prepared.loaded.model)
    longest = int(train.lengths.max())
    info = prepared.loaded

    def trial(batch: int, max_len: int, checkpointing: bool) -> Trial:
        t = Trial(batch, max_len, checkpointing)
        settings = dataclasses.replace(cfg, batch_size=batch, max_seq_length=max_len, grad_checkpoint=checkpointing)
        est = estimate_memory(
            model_path, settings, None, info.quantization.get("bits") if info.quantization else None, longest
        )
        if est is not None and est.total / GB > FAR_OVER * limit:
            t.note = f"the estimate, {est.total / GB:.1f} GB, is far over the limit"
        else:
            say(f"measuring {t.settings()}")
            rows = _longest_rows(train, batch, max_len, cfg.train_mode == "dpo")
            _measure(t, settings, model, prepared.loss_fn, rows)
            load_adapter_weights(model, start)  # each trial starts from the same adapter
        result.trials.append(t)
        return t

    checkpointing, max_len = cfg.grad_checkpoint, min(cfg.max_seq_length, longest)
    sizes = [cfg.batch_size]
    while sizes[-1] > 1:
        sizes.append(sizes[-1] // 2)
    if not any(trial(b, max_len, checkpointing).fits(limit) for b in sizes) and not checkpointing:
        checkpointing = True
        use_grad_checkpoint(model)
        if not any(trial(b, max_len, True).fits(limit) for b in sizes):
            max_len = max_len // 2
            while max_len >= SHORTEST and not trial(1, max_len, True).fits(limit):
                max_len //= 2
    chosen = result.chosen
    if chosen is not None and chosen.seconds_per_step:
        result.run_seconds = _run_seconds(cfg, data, chosen, total_steps)
    return result


def _measure(t: Trial, cfg: TrainConfig, model: Any, loss_fn: Any, rows: EncodedSplit) -> None:
    """Two optimizer steps (forward, backward, update) on these rows; the second is timed. A GRPO step
    samples its answers first (to the full length: the longest step there can be), then trains on them."""
    optimizer = build_optimizer(cfg, 10)
    optimizer.init(model.trainable_parameters())
    step = TrainStep(model, optimizer, loss_fn, cfg.grad_clip, None)
    grpo = isinstance(loss_fn, GrpoLoss)
    prompts = [rows.tokens[i] for i in range(rows.rows)]
    mx.clear_cache()
    mx.reset_peak_memory()
    for i in range(2):
        t0 = time.perf_counter()
        batches = (
            full_length_batches(model, cfg, loss_fn, prompts) if grpo else [make_batch(rows, np.arange(rows.rows))]
        )
        step(batches)
        mx.eval(step.state)
        if i == 1:
            t.seconds_per_step = time.perf_counter() - t0
    t.peak_gb = mx.get_peak_memory() / GB
    tokens = rows.rows * cfg.group_size * cfg.max_completion_length if grpo else int(rows.row_lengths.sum())
    t.tokens_per_sec = tokens / t.seconds_per_step if t.seconds_per_step else 0.0


def memory_fingerprint(cfg: TrainConfig) -> tuple[Any, ...]:
    """The settings a measured peak depends on: a preflight stands for a run only while these are equal."""
    keys = (
        "model",
        "data",
        "train_mode",
        "quantize_bits",
        "quantize_group_size",
        "mask_prompt",
        "max_seq_length",
        "batch_size",
        "num_layers",
        "fine_tune_type",
        "grad_checkpoint",
        "valid_fraction",
        "seed",
    )
    return tuple(cfg.value(k) for k in keys) + (repr(sorted(cfg.lora_parameters.items())),)


def preflight_in_child(cfg: TrainConfig) -> PreflightResult:
    """The preflight in a child process, so that a step too big for memory can never take the app down."""
    import json
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    from ..errors import UserError

    command = [sys.executable] if getattr(sys, "frozen", False) else [sys.executable, "-m", "qlora_gui"]
    with tempfile.TemporaryDirectory() as tmp:
        settings = Path(tmp) / "preflight.yaml"
        settings.write_text(dataclasses.replace(cfg, resume=False).to_yaml(), encoding="utf-8")
        done = subprocess.run(
            [*command, "train", "-c", str(settings), "--preflight", "--json"], capture_output=True, text=True
        )
    if done.returncode < 0 or done.returncode in (137, 9):  # killed: out of memory on most systems
        raise UserError(
            "the check was stopped by the system, most likely out of memory: lower the batch size or "
            "max length, or quantize the base, and check again"
        )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        why = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise UserError(f"the check could not run: {why.removeprefix('error: ')}")
    return PreflightResult.from_dict(json.loads(lines[-1]))
