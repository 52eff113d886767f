"""The steps of one run: epochs, accumulation, reports, validation, checkpoints, recovery from divergence."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, cast

import mlx.core as mx
from mlx.utils import tree_flatten

from ..config import TrainConfig
from ..data.batching import Batch, epoch_batches, eval_batches, make_batch
from ..data.encode import EncodedSplit
from ..distributed.agreement import sum_across_ranks
from ..events import Event, Finished, PreferenceReport, Recovered, ValidationResult, finite_or_none
from ..memory import GB, clear_cache_if_above
from ..model.grouped_lora import mlx_layout
from ..model.loader import adapter_weights
from ..runs import checkpoints as ckpt
from ..runs.checkpoints import TrainState
from .divergence import Diverged, DivergenceGuard
from .grpo_mode import GrpoRollout
from .losses import LossFn
from .memory_ceiling import MemoryCeiling, ceiling_by_default, step_shape
from .optimizer import build_optimizer
from .preference_mode import LazyReference
from .progress import Progress
from .run_record import RunRecord
from .sample_answers import Answerer
from .step import LossTotals, TrainStep, evaluate_totals

Flat = dict[str, mx.array]


@dataclass
class Snapshot:
    """The last checkpoint, kept in memory (MLX arrays are immutable: holding them copies nothing), so that
    every rank can go back to it after a divergence."""

    adapters: Flat
    optimizer: Flat
    state: TrainState = field(default_factory=TrainState)


@dataclass
class RunControl:
    """How the loop asks whether to stop, and waits while paused (the Trainer's, safe from any thread)."""

    stop_requested: Callable[[], bool]
    wait_if_paused: Callable[[Progress], None]


class TrainingLoop:
    def __init__(
        self,
        cfg: TrainConfig,
        model: Any,
        loss_fn: LossFn,
        data: dict[str, EncodedSplit],
        total_steps: int,
        steps_per_epoch: int,
        group: Any,
        record: RunRecord,
        adapter_config: dict[str, Any],
        control: RunControl,
        answerer: Answerer | None = None,
        reference: LazyReference | None = None,
        rollout: GrpoRollout | None = None,
        batcher: Callable[[EncodedSplit, Any], Batch] = make_batch,
        compiled: bool = True,
    ):
        self.cfg, self.model, self.loss_fn, self.data = cfg, model, loss_fn, data
        self.total_steps, self.spe, self.group, self.record = total_steps, steps_per_epoch, group, record
        self.adapter_config, self.control, self.answerer = adapter_config, control, answerer
        self.reference = reference  # DPO: the base's log-probabilities, measured as pairs are first read
        self.rollout = rollout  # GRPO: samples and scores each step's answers, which are then its batches
        # Picture rows bring their pixels (vision_step.py); their models' forward reads shapes on the host.
        self.batcher, self.compiled = batcher, compiled
        self.state = TrainState(seed=cfg.seed)
        self.optimizer_updates = 0  # updates applied (a step whose micro-batches were all bad applies none)
        self._pairs: PreferenceReport | None = None  # the last validation's pair figures (preference modes)
        # Gradient checkpointing puts memory first: MLX's limit then follows what a step needs.
        self.ceiling = MemoryCeiling() if cfg.grad_checkpoint and ceiling_by_default() else None
        self._build_step()

    def _build_step(self, restore: Snapshot | None = None, source: str = "") -> None:
        """The optimizer (its schedule scaled by the state's lr_scale), the weights and optimizer state to go on
        from, then the compiled step: it captures the optimizer's state as it is when built."""
        self.optimizer = build_optimizer(self.cfg, self.total_steps, self.state.lr_scale)
        self.optimizer.init(self.model.trainable_parameters())
        if restore is not None:
            ckpt.restore_arrays(self.model, self.optimizer, restore.adapters, restore.optimizer, source)
        self.train_step = TrainStep(
            self.model, self.optimizer, self.loss_fn, self.cfg.grad_clip, self.group, self.compiled
        )

    def restore(self, checkpoint: Path) -> None:
        """Continue from a checkpoint folder (resume): its state first, since it sets the learning rate."""
        adapters, optimizer, saved = ckpt.load_checkpoint(checkpoint)
        self.state = self.state.updated(saved)
        self._build_step(Snapshot(adapters, optimizer), str(checkpoint))

    def _snapshot(self) -> Snapshot:
        flat = cast(list[tuple[str, mx.array]], tree_flatten(self.optimizer.state))
        # Both in mlx-lm's per-projection names, whatever the model groups (grouped_lora.py).
        return Snapshot(adapter_weights(self.model), mlx_layout(self.model, dict(flat)), replace(self.state))

    # ------------------------------------------------------------ the run

    def run(self) -> Event:
        try:
            return self._run()
        finally:
            if self.ceiling is not None:
                self.ceiling.close()

    def _run(self) -> Event:
        cfg, valid = self.cfg, self.data.get("valid")  # self.state, never a local: a recovery replaces it
        self.progress = Progress(self.total_steps, self.spe, cfg.ram_warn_share, self.group)
        self.model.train()
        self.last_good = self._snapshot()
        if self.state.step == 0:  # the starting points: the validation curve's and the base's answers
            if valid is not None:
                self._record_validation(valid)
                self.state.val_loss = None
            self._answer()
        stopped = False
        while self.state.step < self.total_steps and not stopped:
            try:
                stopped = self._epoch()
            except Diverged as e:
                if self.state.recoveries >= cfg.divergence_retries:
                    raise
                self._recover(e)
        if stopped:
            self._save("stop", False)
            return self._finish(True, None)
        is_best = self._record_validation(valid) if valid is not None else False
        self._answer()
        self._save("end", is_best)
        test, test_loss = self.data.get("test"), None
        if cfg.test and test is not None and self.rollout is not None:
            test_loss = self._rewards_held_out(test, cfg.test_batches, "test")
        elif cfg.test and test is not None:
            test_loss, tokens, secs = self._validate(test, cfg.test_batches, "test")
            self.record.emit(
                ValidationResult(
                    step=self.state.step,
                    val_loss=test_loss,
                    val_tokens=tokens,
                    is_best=False,
                    seconds=secs,
                    split="test",
                )
            )
            if self._pairs is not None:
                self.record.emit(self._pairs)
        return self._finish(False, test_loss)

    def _epoch(self) -> bool:
        """The rest of the current epoch (or of the step budget); True when stopped."""
        cfg, state, train, valid = self.cfg, self.state, self.data["train"], self.data.get("valid")
        epoch, progress = state.epoch, self.progress
        guard = DivergenceGuard(cfg.max_bad_steps, cfg.learning_rate * state.lr_scale)
        # The epoch's order is rebuilt from (seed, epoch) each epoch, so a resume can rebuild it too.
        batches = epoch_batches(train.lengths, cfg.batch_size, cfg.seed, epoch, self.group.rank(), self.group.size())
        while state.epoch == epoch and state.step < self.total_steps:
            self.control.wait_if_paused(progress)
            if self.control.stop_requested():
                return True
            t0 = time.perf_counter()
            step = state.step + 1
            # Dropout depends on (seed, step) and the rank alone: each rank's rows draw masks of their own.
            mx.random.seed(cfg.seed * 1_000_003 + step + (self.group.rank() << 40))
            group = batches[state.batch_pos : state.batch_pos + cfg.grad_accumulation_steps]
            # On several ranks, a rank's part of a batch smaller than the number of ranks is empty.
            if self.reference is not None:
                self.reference.ensure(train, [idx for idx in group if len(idx)])
            if self.rollout is not None:  # the answers are sampled from the step's seeded random state
                micro = self.rollout.micro_batches(self.model, train, [idx for idx in group if len(idx)], step)
                self._say_reward_warnings(step)
            else:
                micro = [self.batcher(train, idx) for idx in group if len(idx)]
            if self.ceiling is not None:
                self.ceiling.before_step(*step_shape(micro))
            result = self.train_step(micro)
            if self.ceiling is not None:
                self.ceiling.after_step()
            for skipped in guard.check(result, step):
                self.record.warn(skipped, step)
            self.optimizer_updates += result.updated
            if self.rollout is not None:
                self.rollout.add_result(result.stats)
            state.step, state.batch_pos = step, state.batch_pos + len(group)
            if state.batch_pos >= len(batches):
                state.epoch, state.batch_pos = state.epoch + 1, 0
            tokens = result.trained_tokens
            state.trained_tokens += tokens
            state.val_loss = None
            seconds = time.perf_counter() - t0
            progress.add_step(result.loss_sum, result.tokens, seconds, tokens=tokens, stats=result.stats)
            progress.add_rank_count(sum(m.tokens for m in result.micro))  # this rank's own, for its speed
            if step % cfg.steps_per_report == 0 or step == self.total_steps:
                pairs = progress.preference_report(step) if self.rollout is None else None
                self.record.emit(progress.report(step, self.train_step.learning_rate(), state.trained_tokens))
                if pairs is not None:
                    self.record.emit(pairs)
                for event in self.rollout.reports(step) if self.rollout is not None else []:
                    self.record.emit(event)
                memory = progress.memory_warning()
                if memory:
                    self.record.warn(memory, step)
            is_best = False
            if step % cfg.steps_per_eval == 0 and step != self.total_steps:
                is_best = self._record_validation(valid) if valid is not None else False
                self._answer()
                mx.clear_cache()  # their buffers (other shapes than a step's) go back, not into the next peak
            periodic = step % cfg.save_every == 0 and step != self.total_steps  # the end saves the last step
            if periodic or is_best:
                self._save("periodic" if periodic else "best", is_best)
            clear_cache_if_above(int(cfg.clear_cache_gb * GB))
        return False

    def _recover(self, error: Diverged) -> None:
        """Back to the last checkpoint with half the learning rate; the same batches follow, in the same order."""
        failed_at, good = self.state.step + 1, self.last_good
        attempt, scale = self.state.recoveries + 1, self.state.lr_scale * 0.5
        self.state = replace(good.state, lr_scale=scale, recoveries=attempt)
        self._build_step(good, "the last checkpoint")
        self.record.warn(
            f"{error} — going back to step {good.state.step} with the learning rate halved "
            f"(retry {attempt} of {self.cfg.divergence_retries})",
            failed_at,
        )
        self.record.emit(
            Recovered(
                step=failed_at, back_to=good.state.step, lr_scale=scale, attempt=attempt, of=self.cfg.divergence_retries
            )
        )

    # ------------------------------------------------------------ validation, saving, the end

    def _validate(self, split: EncodedSplit, max_batches: int, name: str) -> tuple[float, int, float]:
        """The split's loss; with a preference loss also how its pairs fare (emitted after the result)."""
        t0 = time.perf_counter()
        order = eval_batches(split.lengths, self.cfg.batch_size)
        if max_batches > 0:
            order = order[:max_batches]
        world = self.group.size() if len(order) >= self.group.size() else 1  # several ranks: each its share
        mine = order[self.group.rank() :: world] if world > 1 else order
        if self.reference is not None:
            self.reference.ensure(split, mine)
        self.model.eval()
        mine_totals = evaluate_totals(self.model, (self.batcher(split, idx) for idx in mine), self.loss_fn)
        totals = LossTotals.of(sum_across_ranks(mine_totals.as_list(), self.group if world > 1 else None))
        self.model.train()
        pairs = bool(totals.stats) and totals.count > 0
        self._pairs = PreferenceReport.of(self.state.step, totals.count, totals.stats, name) if pairs else None
        return totals.mean_loss, totals.trained_tokens, time.perf_counter() - t0

    def _say_reward_warnings(self, step: int) -> None:
        if self.rollout is not None:
            for message in self.rollout.warnings:
                self.record.warn(message, step)
            self.rollout.warnings = []

    def _rewards_held_out(self, split: EncodedSplit, max_batches: int, name: str) -> float:
        """GRPO: the mean reward on held-out prompts, emitted; returned negated, as the run's validation
        "loss" (lower is better, so the best checkpoint is the one that earns the most)."""
        assert self.rollout is not None
        report = self.rollout.evaluate(self.model, split, name, max_batches, self.state.step)
        self._say_reward_warnings(self.state.step)
        self.record.emit(report)
        return -report.reward_mean

    def _record_validation(self, split: EncodedSplit) -> bool:
        state = self.state
        if self.rollout is not None:
            loss = self._rewards_held_out(split, self.cfg.val_batches, "valid")
            best = state.best_val_loss is None or loss < state.best_val_loss
            state.val_loss = loss
            if best:
                state.best_val_loss, state.best_step = loss, state.step
            return best
        loss, tokens, secs = self._validate(split, self.cfg.val_batches, "valid")
        best = state.best_val_loss is None or loss < state.best_val_loss
        state.val_loss = loss
        if best:
            state.best_val_loss, state.best_step = loss, state.step
        self.record.emit(
            ValidationResult(step=state.step, val_loss=loss, val_tokens=tokens, is_best=best, seconds=secs)
        )
        if self._pairs is not None:
            self.record.emit(self._pairs)
        return best

    def _answer(self) -> None:
        """The sample prompts' answers now; only the rank that reports makes them (the others wait at the next
        step's gradient sum)."""
        if self.answerer is None or not self.record.is_main:
            return
        try:
            answers = self.answerer.answer(self.model, self.state.step)
        except Exception as e:  # they are a view of the run, never a reason to end it
            self.answerer = None
            self.record.warn(f"sample answers stopped ({type(e).__name__}: {e}); training goes on without them")
            return
        if self.rollout is not None:
            self.rollout.score_samples(answers)
        self.record.emit(answers)

    def _save(self, reason: str, is_best: bool) -> None:
        snapshot = self._snapshot()
        self.record.save(
            self.state.step,
            snapshot.adapters,
            self.adapter_config,
            snapshot.optimizer,
            self.state,
            self.cfg.keep_last,
            reason,
            is_best,
        )
        self.last_good = snapshot

    def _finish(self, stopped: bool, test_loss: float | None) -> Finished:
        state = self.state
        event = Finished(
            step=state.step,
            stopped=stopped,
            train_loss=finite_or_none(self.progress.last_loss),
            val_loss=state.val_loss,
            best_val_loss=state.best_val_loss,
            test_loss=test_loss,
            run_dir=self.cfg.adapter_path,
            elapsed=self.progress.elapsed,
            rewarded=self.rollout is not None,
        )
        self.record.emit(event)
        return event
