"""Held-out loss and perplexity for the base and for the adapter, with the training loss.

By default the numbers are token-weighted means over exactly the batches the
trainer validated on (the validation split, its first `val_batches` batches in
`eval_batches` order), so an adapter's number here equals the run's validation
loss for that checkpoint. Every row of a split, or the test split, is an
explicit choice, and the result says which it measured.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..config import default_of
from ..data.batching import eval_batches, make_batch
from ..data.dataset import check_data
from ..data.formats import is_prompts
from ..errors import DataError, UserError
from ..inference.adapters import AdapterSource, base_view, default_adapter, load_with_adapter
from ..model.fast_quant import fast_path_available, use_fast_quantized_layers
from ..runs import checkpoints as ckpt
from ..runs.run_folder import RunFolder
from ..train.losses import ChunkedLoss, LossFn, chunked_loss_for
from ..train.step import evaluate_loss
from .pair_evaluation import PairScores, pair_scores
from .reward_evaluation import KEYS as REWARD_KEYS
from .reward_evaluation import mean_rewards
from .row_losses import RowLoss, row_loss_sums, row_text


def perplexity(loss: float | None) -> float | None:
    if loss is None or not math.isfinite(loss):
        return None
    return math.exp(loss) if loss < 700 else float("inf")


@dataclass
class EvalResult:
    data: str
    split: str
    rows: int
    tokens: int
    base_loss: float | None
    adapter_loss: float | None
    adapter: str  # the adapter folder, "" for the base alone
    step: int | None
    seconds: float
    batches: int = 0
    all_rows: bool = True  # False: the first `batches` batches, as training validated
    row_losses: list[dict[str, Any]] = field(default_factory=list)  # RowLoss dicts, when asked for
    # Preference pairs: the share whose chosen answer each side finds likelier than the rejected one (the losses
    # above are then the chosen answers' per-token loss).
    base_accuracy: float | None = None
    adapter_accuracy: float | None = None
    reward_accuracy: float | None = None  # DPO's own measure, the adapter against the base (pair_evaluation.py)
    # GRPO's prompts: the mean reward of each side's sampled answers (reward_evaluation.py); no loss then.
    base_reward: float | None = None
    adapter_reward: float | None = None

    def row_details(self) -> list[RowLoss]:
        return [RowLoss(**r) for r in self.row_losses]

    @property
    def base_ppl(self) -> float | None:
        return perplexity(self.base_loss)

    @property
    def adapter_ppl(self) -> float | None:
        return perplexity(self.adapter_loss)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "base_perplexity": self.base_ppl, "adapter_perplexity": self.adapter_ppl}

    def measured(self) -> str:
        """What these numbers cover, in words."""
        what = "all rows" if self.all_rows else f"the {self.batches} batches training validated on"
        if self.base_reward is not None or self.adapter_reward is not None:
            return f"{self.split} split, {what}: {self.rows} prompts, {self.tokens} answers sampled per side"
        if self.base_accuracy is not None or self.adapter_accuracy is not None:
            return f"{self.split} split, {what}: {self.rows} pairs, {self.tokens} tokens of chosen answers"
        return f"{self.split} split, {what}: {self.rows} rows, {self.tokens} trained tokens"

    def to_text(self) -> str:
        lines = [f"{self.measured()} ({self.data})"]
        for name, loss, ppl in (
            ("base", self.base_loss, self.base_ppl),
            ("adapter", self.adapter_loss, self.adapter_ppl),
        ):
            if loss is not None:
                lines.append(f"  {name:<8} loss {loss:.4f}   perplexity {ppl:.3f}")
        for name, share in (("base", self.base_accuracy), ("adapter", self.adapter_accuracy)):
            if share is not None:
                lines.append(f"  {name:<8} finds the chosen answer likelier in {share:.1%} of the pairs")
        for name, reward in (("base", self.base_reward), ("adapter", self.adapter_reward)):
            if reward is not None:
                lines.append(f"  {name:<8} mean reward {reward:.3f} (the run's rewards on its sampled answers)")
        if self.reward_accuracy is not None:
            lines.append(
                f"  the adapter raised the chosen answer over the rejected one, against the base, in "
                f"{self.reward_accuracy:.1%} of the pairs (DPO's reward accuracy)"
            )
        return "\n".join(lines)


def _setting(adapter: AdapterSource | None, key: str) -> Any:
    """A setting the adapter was trained with, or its default."""
    return adapter.config.get(key, default_of(key)) if adapter else default_of(key)


def evaluate(
    model: str | None = None,
    adapter: AdapterSource | None = None,
    data: str | None = None,
    *,
    split: str = "valid",
    batch_size: int | None = None,
    max_batches: int | None = None,
    include_base: bool = True,
    loss_fn: LossFn | None = None,
    per_row: bool = False,
    progress: Callable[[str], None] | None = None,
) -> EvalResult:
    """Loss of the base and the adapter. By default on the batches the run validated on (the validation
    split, the run's `val_batches`); `max_batches=-1` takes every row, `split="test"` the test split.
    `per_row` adds each of those rows' own losses (see row_losses.py)."""
    say = progress or (lambda _msg: None)
    if adapter is not None and adapter.is_vision:
        raise UserError(
            f"{adapter.path}: Evaluate does not take vision runs yet; the run's validation loss is in its "
            "metrics, and the Playground (or `qlora-gui generate --image`) answers about pictures"
        )
    data = data or _setting(adapter, "data")
    if not data:
        raise UserError("give the data to evaluate on (--data); the adapter's config does not name any")
    t0 = time.perf_counter()
    say("loading the model")
    loaded = load_with_adapter(model, adapter)
    say("checking the data")
    check = check_data(
        data,
        loaded.tokenizer,
        **{k: _setting(adapter, k) for k in ("max_seq_length", "mask_prompt", "valid_fraction", "seed")},
    )
    if not check.report.usable or check.encoded is None:
        raise DataError(
            f"{check.report.source}: the data has {check.report.problem_count} problem(s); fix them and evaluate again",
            check.report.problem_lines(),
        )
    encoded = check.encoded
    if split not in encoded:
        held = ", ".join(sorted(encoded))
        raise UserError(f"{data} has no {split} split (it has: {held}); pick one of those")
    chosen = encoded[split]
    order = eval_batches(chosen.lengths, batch_size or _setting(adapter, "batch_size"))
    if max_batches is None:  # as training validated: the valid split's first val_batches batches (all rows for
        # a run trained elsewhere: its trainer batched them its own way)
        as_trained = split == "valid" and not (adapter is not None and adapter.trained_elsewhere)
        max_batches = _setting(adapter, "val_batches") if as_trained else -1
    all_rows = not 0 < max_batches < len(order)
    if not all_rows:
        order = order[:max_batches]
    if loaded.quantization and fast_path_available():
        use_fast_quantized_layers(loaded.model)  # the same kernels as training on the CPU
    loaded.model.eval()
    loss_fn = loss_fn or chunked_loss_for(loaded.model)[0]  # the trainer's own loss
    head = loss_fn if isinstance(loss_fn, ChunkedLoss) else None  # pairs: the answers' positions alone

    row_ids = [int(i) for idx in order for i in idx]
    if is_prompts(check.report.format) and adapter is not None:  # GRPO's prompts: rewards, no loss
        say("sampling and scoring answers")
        settings = {k: _setting(adapter, k) for k in REWARD_KEYS}
        base, mine = mean_rewards(
            loaded.model, loaded.tokenizer, settings, chosen, check.raw[split], split, max_batches, include_base
        )
        answers = len(row_ids) * int(settings["group_size"])
        return EvalResult(
            str(data), split, len(row_ids), answers, None, None, str(adapter.path), adapter.step,
            time.perf_counter() - t0, len(order), all_rows, base_reward=base, adapter_reward=mine,
        )  # fmt: skip
    per: dict[str, list[tuple[float, int]]] = {}
    per_row = per_row and not chosen.pairs  # a pair's two answers have no one row loss
    scores: dict[str, PairScores] = {}

    def run(side: str) -> tuple[float, int]:
        if chosen.pairs:  # the chosen answers' loss, and how each side ranks the two answers
            scores[side] = pair_scores(loaded.model, chosen, order, head)
            return scores[side].loss, scores[side].tokens
        if per_row:
            per[side] = row_loss_sums(loaded.model, chosen, row_ids, loss_fn)
        return evaluate_loss(loaded.model, (make_batch(chosen, idx) for idx in order), loss_fn)

    base_loss = adapter_loss = None
    tokens = 0
    if include_base or adapter is None:
        say("evaluating the base")
        with base_view(loaded.model):
            base_loss, tokens = run("base")
    if adapter is not None:
        say("evaluating the adapter")
        adapter_loss, tokens = run("adapter")
    details = []
    if per_row:
        raw = check.raw.get(split)
        for k, i in enumerate(row_ids):
            counts = [per[side][k] for side in ("base", "adapter") if side in per]
            n = counts[0][1]
            mean = {side: per[side][k][0] / n if n else None for side in per}
            details.append(
                RowLoss(
                    chosen.lines[i], n, mean.get("base"), mean.get("adapter"), row_text(raw, chosen.lines[i])
                ).to_dict()
            )
    return EvalResult(
        str(data),
        split,
        len(row_ids),
        tokens,
        base_loss,
        adapter_loss,
        str(adapter.path) if adapter else "",
        adapter.step if adapter else None,
        time.perf_counter() - t0,
        len(order),
        all_rows,
        details,
        scores["base"].accuracy if "base" in scores else None,
        scores["adapter"].accuracy if "adapter" in scores else None,
        scores["adapter"].reward_accuracy(scores["base"]) if len(scores) == 2 else None,
    )


def save_evaluation(run_dir: Path, result: EvalResult) -> Path:
    """Add the result to RUN/evaluation.json, replacing an earlier one for the same adapter, data and split."""
    path = RunFolder(run_dir).evaluation
    kept = [
        r
        for r in read_evaluations(run_dir)
        if (r.get("adapter"), r.get("data"), r.get("split")) != (result.adapter, result.data, result.split)
    ]
    ckpt.atomic_write_text(path, json.dumps({"results": kept + [result.to_dict()]}, indent=2))
    return path


def read_evaluations(run_dir: Path) -> list[dict[str, Any]]:
    try:
        return list(json.loads(RunFolder(run_dir).evaluation.read_text()).get("results", []))
    except (OSError, ValueError, AttributeError):
        return []


def evaluate_run(run_dir: str, data: str | None = None) -> EvalResult:
    """The job behind 'Evaluate': the default checkpoint, the run's data (or `data`, for a run trained elsewhere
    whose config names none) and settings; saved in the run."""
    result = evaluate(adapter=default_adapter(run_dir), data=data, per_row=True)  # the hardest rows too
    save_evaluation(Path(run_dir), result)
    return result


def evaluation_text(results: list[dict[str, Any]]) -> str:
    """Saved evaluations in words, one line each (the Runs tab's summary of a run)."""
    lines = []
    for r in results:
        step = f"step {r['step']}" if r.get("step") is not None else "latest"
        parts = [
            f"{name} loss {r[key]:.4f} (perplexity {r[ppl]:.2f})"
            for name, key, ppl in (
                ("base", "base_loss", "base_perplexity"),
                ("adapter", "adapter_loss", "adapter_perplexity"),
            )
            if r.get(key) is not None and r.get(ppl) is not None
        ]
        if r.get("adapter_accuracy") is not None:  # preference pairs
            shares = [f"{r[k]:.0%}" for k in ("base_accuracy", "adapter_accuracy") if r.get(k) is not None]
            parts.append("chosen answer likelier in " + " → ".join(shares) + " of the pairs")
            if r.get("reward_accuracy") is not None:
                parts.append(f"DPO reward accuracy {r['reward_accuracy']:.0%}")
        if r.get("adapter_reward") is not None:  # GRPO's prompts: the mean reward of each side's answers
            rewards = [f"{r[k]:.3f}" for k in ("base_reward", "adapter_reward") if r.get(k) is not None]
            parts.append("mean reward " + " → ".join(rewards))
        what = (
            "all rows"
            if r.get("all_rows", True)
            else f"the {r.get('batches')} batches training validated on, so the adapter's loss is the run's "
            "validation loss for this checkpoint"
        )
        lines.append(
            f"{r['split']} split, {what} ({r['rows']} rows / {r['tokens']} tokens), {step}: " + " → ".join(parts)
        )
    return "\n".join(lines)


def last_row_losses(results: list[dict[str, Any]]) -> tuple[list[RowLoss], str]:
    """The per-row losses of the newest evaluation that has them, and what it measured."""
    for r in reversed(results):
        if r.get("row_losses"):
            what = f"{r['split']} split, {r['rows']} rows, step {r.get('step')}"
            return [RowLoss(**x) for x in r["row_losses"]], what
    return [], ""
