"""The trainer's events: small dataclasses of plain values, safe to pass between threads.

Each has a `kind`; `to_dict()` is what metrics.jsonl stores, one line per event, and `event_from_row` makes the
same event of such a line again. `describe()` is the event in words, as the console and the Train tab's log
both print it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar


@dataclass
class Event:
    kind: ClassVar[str] = "event"

    def to_dict(self) -> dict[str, Any]:
        return {"event": self.kind, **dataclasses.asdict(self)}

    def to_json_line(self) -> str:
        """One line of metrics.jsonl. JSON has no NaN or infinity: those are written as null."""
        row = {k: (finite_or_none(v) if isinstance(v, float) else v) for k, v in self.to_dict().items()}
        return json.dumps(row) + "\n"

    def describe(self) -> str:
        """The event in words: one line or a few, for the console and the Train tab's log."""
        values = ", ".join(f"{k}={v}" for k, v in dataclasses.asdict(self).items())
        return f"{self.kind}: {values}"


def finite_or_none(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None


@dataclass
class RunStarted(Event):
    kind: ClassVar[str] = "run_started"
    run_dir: str
    config: dict[str, Any]
    trainable_params: int
    total_params: int
    steps_per_epoch: int
    total_steps: int
    start_step: int
    train_rows: int
    valid_rows: int
    padding_share: float
    blas: str = ""
    quant_path: str = ""  # how the frozen quantized base is computed, when there is one
    loss_path: str = ""  # how the loss is computed: chunked over the vocabulary, or full logits and why
    backend: str = ""  # the device MLX trains on
    machines: list[str] = field(default_factory=list)  # each rank's host, on several machines (else empty)

    def describe(self) -> str:
        lines = [
            f"Run folder: {self.run_dir}",
            f"Trainable parameters: {self.trainable_params:,} of {self.total_params:,} "
            f"({100 * self.trainable_params / max(self.total_params, 1):.3f}%)",
            f"Training rows: {self.train_rows}, validation rows: {self.valid_rows}; {self.steps_per_epoch} steps "
            f"per epoch, {self.total_steps} steps; padding {self.padding_share:.1%}; "
            f"BLAS: {self.blas}" + (f"; quantized base: {self.quant_path}" if self.quant_path else ""),
            f"Device: {self.backend}; {self.loss_path}",
        ]
        if self.machines:
            ranks = ", ".join(f"rank {r}: {h}" for r, h in enumerate(self.machines))
            lines.append(f"Machines: {len(self.machines)} ({ranks})")
        return "\n".join(lines)


@dataclass
class StepReport(Event):
    kind: ClassVar[str] = "step"
    step: int
    epoch: float  # fractional: 1.5 is half way through the second epoch
    loss: float
    learning_rate: float
    tokens_per_sec: float
    steps_per_sec: float
    trained_tokens: int  # over the whole run so far
    elapsed: float
    eta: float
    mlx_active_gb: float
    mlx_peak_gb: float
    mlx_cache_gb: float
    rss_gb: float
    rank_tokens_per_sec: list[float] = field(default_factory=list)  # each rank's share, on several machines

    def describe(self) -> str:
        rates = self.rank_tokens_per_sec  # on several machines, each one's share
        ranks = f" | ranks {' + '.join(f'{r:.0f}' for r in rates)} tok/s" if len(rates) > 1 else ""
        return (
            f"step {self.step:>6} | epoch {self.epoch:5.2f} | loss {self.loss:.4f} | lr {self.learning_rate:.2e} | "
            f"{self.tokens_per_sec:8.0f} tok/s | peak {self.mlx_peak_gb:.2f} GB | rss {self.rss_gb:.2f} GB | "
            f"ETA {self.eta:6.0f}s{ranks}"
        )


@dataclass
class PreferenceReport(Event):
    """How preference pairs fare (DPO, ORPO): on the steps since the last report, or on a validation."""

    kind: ClassVar[str] = "preference"
    step: int
    reward_accuracy: float  # share of pairs whose chosen answer gets the higher reward
    reward_margin: float  # mean of chosen reward minus rejected reward
    chosen_logp: float  # mean summed log-probability of the chosen answers
    rejected_logp: float  # ... and of the rejected ones
    pairs: int
    split: str = "train"

    @classmethod
    def of(cls, step: int, pairs: float, stats: list[float], split: str = "train") -> PreferenceReport:
        """From the sums a preference loss reports (preference.PREFERENCE_STATS: tokens, won, margin, chosen
        log-probability, rejected log-probability) over `pairs` pairs."""
        n = max(pairs, 1)
        _tokens, won, margin, chosen_logp, rejected_logp = stats[:5]
        return cls(
            step=step,
            reward_accuracy=won / n,
            reward_margin=margin / n,
            chosen_logp=chosen_logp / n,
            rejected_logp=rejected_logp / n,
            pairs=int(pairs),
            split=split,
        )

    def describe(self) -> str:
        return (
            f"step {self.step:>6} | {self.split} pairs: chosen wins {self.reward_accuracy:.1%} | reward margin "
            f"{self.reward_margin:+.3f} | log p chosen {self.chosen_logp:.2f}, rejected {self.rejected_logp:.2f}"
        )


@dataclass
class RewardReport(Event):
    """How GRPO's sampled answers score: on the steps since the last report, or on held-out prompts."""

    kind: ClassVar[str] = "rewards"
    step: int
    reward_mean: float  # the weighted total, averaged over answers
    reward_spread: float  # the standard deviation of the total within a group, averaged over groups
    functions: dict[str, float]  # each reward function's own mean score (before its weight)
    kl: float | None  # mean per-token KL divergence to the frozen base (None when beta is 0 or held out)
    completion_length: float  # mean tokens per answer
    zero_spread_share: float  # share of groups whose answers all scored the same: nothing to learn from
    groups: int
    split: str = "train"

    def describe(self) -> str:
        each = ", ".join(f"{k} {v:.3f}" for k, v in self.functions.items())
        kl = f" | KL {self.kl:.4f}" if self.kl is not None else ""
        return (
            f"step {self.step:>6} | {self.split} reward {self.reward_mean:.3f} ({each}) | spread "
            f"{self.reward_spread:.3f} | {self.zero_spread_share:.0%} groups all alike | "
            f"{self.completion_length:.1f} tokens per answer{kl}"
        )


@dataclass
class GroupCompletions(Event):
    """The answers sampled for one prompt at `step`, with each one's rewards and advantage."""

    kind: ClassVar[str] = "completions"
    step: int
    prompt: str
    reference: str  # the row's answer, "" when it gives none
    completions: list[dict[str, Any]]  # text, reward (weighted total), rewards (by function), advantage, tokens
    source: str = ""  # FILE:LINE of the prompt's row

    def describe(self) -> str:
        if not self.completions:
            return f"step {self.step:>6} | no answers to {one_line(self.prompt, 60)}"
        best = max(self.completions, key=lambda c: c["reward"])
        return f"  best answer ({best['reward']:.2f}) to {one_line(self.prompt, 60)}: {one_line(best['text'], 100)}"


@dataclass
class ValidationResult(Event):
    kind: ClassVar[str] = "validation"
    step: int
    val_loss: float
    val_tokens: int
    is_best: bool
    seconds: float
    split: str = "valid"

    def describe(self) -> str:
        best = " (best)" if self.is_best else ""
        return (
            f"step {self.step:>6} | {self.split} loss {self.val_loss:.4f}{best} | {self.val_tokens} tokens in "
            f"{self.seconds:.1f}s"
        )


@dataclass
class SampleAnswers(Event):
    """The model's greedy answers to the sample prompts at `step` (0: the base, before any training)."""

    kind: ClassVar[str] = "samples"
    step: int
    # prompt, reference, answer, tokens, finish ("stop"/"length"), source (FILE:LINE); GRPO: reward
    answers: list[dict[str, Any]]
    seconds: float  # kept out of tokens/s: the step timer does not run while answering

    def describe(self) -> str:
        lines = [f"step {self.step:>6} | sample answers in {self.seconds:.1f}s (not counted in tok/s)"]
        return "\n".join(lines + [f"  [{i}] {one_line(a['answer'])}" for i, a in enumerate(self.answers, 1)])


@dataclass
class TrainWarning(Event):
    kind: ClassVar[str] = "warning"
    message: str
    step: int = 0
    info: bool = False  # a fact worth a line in the log (what a pass took), not a warning

    def describe(self) -> str:
        return self.message if self.info else f"warning: {self.message}"


@dataclass
class Recovered(Event):
    """Training diverged at `step` and went back to the checkpoint of `back_to` with a lower learning rate."""

    kind: ClassVar[str] = "recovery"
    step: int
    back_to: int
    lr_scale: float  # of the settings' learning rate, from now on
    attempt: int
    of: int

    def describe(self) -> str:
        return (
            f"step {self.step:>6} | diverged: back to the checkpoint of step {self.back_to}, learning rate "
            f"x{self.lr_scale:g} (attempt {self.attempt} of {self.of})"
        )


@dataclass
class CheckpointSaved(Event):
    kind: ClassVar[str] = "checkpoint"
    path: str
    step: int
    val_loss: float | None
    is_best: bool
    reason: str  # "periodic", "stop", "end"

    def describe(self) -> str:
        return f"step {self.step:>6} | saved {self.path} ({self.reason})"


@dataclass
class Finished(Event):
    kind: ClassVar[str] = "finished"
    step: int
    stopped: bool  # True when stop() ended the run early
    train_loss: float | None
    val_loss: float | None
    best_val_loss: float | None
    test_loss: float | None
    run_dir: str
    elapsed: float
    rewarded: bool = False  # GRPO: the validation "loss" is the held-out mean reward, negated

    def describe(self) -> str:
        how = "stopped" if self.stopped else "finished"
        val = f", validation loss {self.val_loss:.4f}" if self.val_loss is not None else ""
        if self.val_loss is not None and self.rewarded:
            val = f", held-out mean reward {-self.val_loss:.3f}"
        return f"{how} at step {self.step} in {self.elapsed:.1f}s{val}. Adapter: {self.run_dir}"


@dataclass
class Failed(Event):
    kind: ClassVar[str] = "failed"
    message: str
    details: str = ""
    exit_code: int = 1
    problems: list[str] = field(default_factory=list)

    def describe(self) -> str:
        return "\n".join([f"error: {self.message}", *self.problems])


EventCallback = Callable[[Event], None]


def one_line(text: str, width: int = 200) -> str:
    """Text on one terminal line: line breaks shown as ⏎, cut at `width` characters."""
    flat = " ⏎ ".join(part.strip() for part in text.strip().splitlines())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


# ---------------------------------------------------------------- events read back


def event_classes() -> dict[str, type[Event]]:
    """Every event class by its kind, including ones added later anywhere in the package."""
    found: dict[str, type[Event]] = {}
    pending = list(Event.__subclasses__())
    while pending:
        cls = pending.pop()
        found.setdefault(cls.kind, cls)
        pending += cls.__subclasses__()
    return found


_unknown_kinds: set[str] = set()


def _missing_value(f: dataclasses.Field) -> Any:
    """A value that says nothing, for a required field an older version did not write yet."""
    kind = str(f.type).replace(" ", "")
    if "None" in kind.split("|"):
        return None
    return {"float": math.nan, "int": 0, "str": "", "bool": False}.get(kind, [] if kind.startswith("list") else {})


def _restored(f: dataclasses.Field, value: Any) -> Any:
    if value is None and str(f.type).replace(" ", "") == "float":
        return math.nan  # written as null: JSON has no NaN
    return value


def event_from_row(row: Any, complete: bool = False) -> Event | None:
    """The event one metrics.jsonl row (a dict from its JSON line) holds; None for a row that is not one.

    A field the row lacks (written by an older version) gets its default, or a value that says nothing; with
    `complete`, such a row is not an event. A kind this version does not know is skipped with a warning in
    the log, once per kind: a run written by a newer version still reads."""
    if not isinstance(row, dict):
        return None
    kind = str(row.get("event"))
    cls = event_classes().get(kind)
    if cls is None:
        if kind not in _unknown_kinds and "event" in row:
            _unknown_kinds.add(kind)
            logging.getLogger(__name__).warning("skipped events of an unknown kind: %r", kind)
        return None
    values = {}
    for f in dataclasses.fields(cls):
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if f.name in row:
            values[f.name] = _restored(f, row[f.name])
        elif required and complete:
            return None
        elif required:
            values[f.name] = _missing_value(f)
    try:
        return cls(**values)
    except TypeError:
        return None


def parse_event_line(line: str, complete: bool = False) -> Event | None:
    """The event a JSON line holds, or None for any other line (a library's message, a line cut short)."""
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        row = json.loads(line)
    except ValueError:
        return None
    return event_from_row(row, complete)
