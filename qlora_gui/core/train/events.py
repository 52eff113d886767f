"""The trainer's events: small dataclasses of plain values, safe to pass between threads.

Each has a `kind`; `to_dict()` is what metrics.jsonl stores, one line per event.
"""

from __future__ import annotations

import dataclasses
import json
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
        return cls(step, stats[1] / n, stats[2] / n, stats[3] / n, stats[4] / n, int(pairs), split)


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


@dataclass
class GroupCompletions(Event):
    """The answers sampled for one prompt at `step`, with each one's rewards and advantage."""

    kind: ClassVar[str] = "completions"
    step: int
    prompt: str
    reference: str  # the row's answer, "" when it gives none
    completions: list[dict[str, Any]]  # text, reward (weighted total), rewards (by function), advantage, tokens
    source: str = ""  # FILE:LINE of the prompt's row


@dataclass
class ValidationResult(Event):
    kind: ClassVar[str] = "validation"
    step: int
    val_loss: float
    val_tokens: int
    is_best: bool
    seconds: float
    split: str = "valid"


@dataclass
class SampleAnswers(Event):
    """The model's greedy answers to the sample prompts at `step` (0: the base, before any training)."""

    kind: ClassVar[str] = "samples"
    step: int
    # prompt, reference, answer, tokens, finish ("stop"/"length"), source (FILE:LINE); GRPO: reward
    answers: list[dict[str, Any]]
    seconds: float  # kept out of tokens/s: the step timer does not run while answering


@dataclass
class TrainWarning(Event):
    kind: ClassVar[str] = "warning"
    message: str
    step: int = 0
    info: bool = False  # a fact worth a line in the log (what a pass took), not a warning


@dataclass
class Recovered(Event):
    """Training diverged at `step` and went back to the checkpoint of `back_to` with a lower learning rate."""

    kind: ClassVar[str] = "recovery"
    step: int
    back_to: int
    lr_scale: float  # of the settings' learning rate, from now on
    attempt: int
    of: int


@dataclass
class CheckpointSaved(Event):
    kind: ClassVar[str] = "checkpoint"
    path: str
    step: int
    val_loss: float | None
    is_best: bool
    reason: str  # "periodic", "stop", "end"


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


@dataclass
class Failed(Event):
    kind: ClassVar[str] = "failed"
    message: str
    details: str = ""
    exit_code: int = 1
    problems: list[str] = field(default_factory=list)


EventCallback = Callable[[Event], None]
