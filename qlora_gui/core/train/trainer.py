"""The QLoRA training loop: epochs, accumulation, validation, checkpoints, exact resume.

`Trainer(config, callback).run()` checks the data before any weights load,
loads the model in the calling thread (MLX streams are per thread), trains,
and emits events. `stop()`, `pause()` and `resume()` are safe from any thread;
they take effect between optimizer steps.
"""

from __future__ import annotations

import threading
import time
import traceback
from pathlib import Path
from typing import Any

import mlx.core as mx
from mlx.utils import tree_flatten

from ..data.batching import epoch_batches, eval_batches, make_batch, padding_share, steps_per_epoch
from ..data.dataset import DataReport, training_data
from ..data.encode import EncodedSplit
from ..errors import DataError, TrainingError, UserError
from ..memory import GB, apply_limits, blas_in_use, clear_cache_if_above, device_name
from ..model.loader import adapter_config, adapter_weights, parameter_counts
from ..model.model_files import load_tokenizer, resolve_model_path
from ..runs import checkpoints as ckpt
from ..runs.run_folder import RunFolder
from ..runs.run_plan import resume_source
from ..runs.run_record import RunRecord
from .config import TrainConfig
from .divergence import DivergenceGuard
from .events import Event, EventCallback, Failed, Finished, RunStarted, ValidationResult, finite_or_none
from .losses import LossFn
from .optimizer import build_optimizer
from .progress import Progress
from .step import TrainStep, evaluate_loss
from .training_model import prepare_model


class Trainer:
    def __init__(
        self,
        config: TrainConfig,
        callback: EventCallback | None = None,
        *,
        loss_fn: LossFn | None = None,
        resume_from: str | Path | None = None,
    ):
        self.config = config
        self._record = RunRecord(callback, is_main=True)
        self._requested_loss = loss_fn  # None: the chunked loss where the model allows it
        self._resume_from = Path(resume_from) if resume_from else None
        self._stop = threading.Event()
        self._running = threading.Event()
        self._running.set()
        self._progress: Progress | None = None
        self.data_report: DataReport | None = None
        self.optimizer_updates = 0  # updates applied (a step whose micro-batches were all bad applies none)
        self.group = mx.distributed.init()
        self._record.is_main = self.group.rank() == 0  # only rank 0 writes files and reports

    # ---------------------------------------------------------- control (any thread)

    def stop(self) -> None:
        """Finish the current step, save a checkpoint, emit Finished(stopped=True)."""
        self._stop.set()
        self._running.set()

    def pause(self) -> None:
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    # ---------------------------------------------------------- run

    def run(self) -> Event:
        """Train to the end or to stop(). Returns the Finished or Failed event; never raises."""
        try:
            return self._run()
        except DataError as e:
            return self._fail(str(e), exit_code=2, problems=e.lines)
        except UserError as e:
            return self._fail(str(e), exit_code=2)
        except TrainingError as e:
            return self._fail(str(e), exit_code=1)
        except Exception as e:  # surfaced as a Failed event with details, never a crash
            return self._fail(f"unexpected {type(e).__name__}: {e}", details=traceback.format_exc(), exit_code=1)
        finally:
            self._record.close()

    def _fail(self, message: str, exit_code: int, details: str = "", problems: list[str] | None = None) -> Failed:
        event = Failed(message, details, exit_code, problems or [])
        self._record.emit(event)
        return event

    def _run(self) -> Event:
        cfg = self.config
        cfg.validate()
        run = RunFolder(cfg.adapter_path)
        run_dir = run.path
        resume_path = resume_source(cfg, self._resume_from)
        model_path = resolve_model_path(cfg.model)
        tokenizer = load_tokenizer(model_path)
        # Every data problem surfaces before any weights load.
        self.data_report, data = training_data(
            cfg.data, tokenizer, cfg.max_seq_length, cfg.mask_prompt, cfg.batch_size, cfg.valid_fraction, cfg.seed
        )
        apply_limits(cfg.memory_limit_gb)
        prepared = prepare_model(cfg, model_path, tokenizer, self._requested_loss)
        loaded, model, notes, self._loss_fn = prepared.loaded, prepared.loaded.model, prepared.notes, prepared.loss_fn
        trainable, total_params = parameter_counts(model)

        train, valid = data["train"], data.get("valid")
        lengths = train.lengths
        world, rank = self.group.size(), self.group.rank()
        first_epoch = epoch_batches(lengths, cfg.batch_size, cfg.seed, 0, rank, world)
        spe = steps_per_epoch(len(first_epoch), cfg.grad_accumulation_steps)
        total_steps = cfg.iters or cfg.epochs * spe
        optimizer = build_optimizer(cfg, total_steps)
        optimizer.init(model.trainable_parameters())

        state = ckpt.new_train_state(cfg.seed)
        if resume_path is not None:
            saved = ckpt.restore_checkpoint(resume_path, model, optimizer)
            state.update({k: saved[k] for k in state if k in saved})

        self._record.open(run, cfg)
        self._adapter_config = adapter_config(cfg, model_path, loaded)
        if prepared.fewer_layers:  # what was adapted, for mlx-lm versions that refuse more layers than the model has
            self._adapter_config["num_layers"] = len(model.layers)
        # The playground applies the chat template only when training did (not for text rows).
        self._adapter_config["data_format"] = self.data_report.format if self.data_report else None
        self._record.emit(
            RunStarted(
                str(run_dir),
                cfg.to_dict(),
                trainable,
                total_params,
                spe,
                total_steps,
                state["step"],
                len(train.tokens),
                len(valid.tokens) if valid else 0,
                padding_share(lengths, first_epoch),
                blas_in_use(),
                prepared.quant_path,
                prepared.loss_path,
                device_name(),
            )
        )
        for note in notes + (self.data_report.warnings if self.data_report else []):
            self._record.warn(note)
        return self._loop(model, optimizer, data, state, total_steps, spe)

    # ---------------------------------------------------------- the loop

    def _validate(self, model: Any, split: EncodedSplit, max_batches: int) -> tuple[float, int, float]:
        t0 = time.perf_counter()
        order = eval_batches(split.lengths, self.config.batch_size)
        if max_batches > 0:
            order = order[:max_batches]
        model.eval()
        loss, tokens = evaluate_loss(model, (make_batch(split, idx) for idx in order), self._loss_fn)
        model.train()
        return loss, tokens, time.perf_counter() - t0

    def _save(self, model: Any, optimizer: Any, state: dict[str, Any], reason: str, is_best: bool) -> None:
        self._record.save(
            state["step"],
            adapter_weights(model),
            self._adapter_config,
            dict(tree_flatten(optimizer.state)),
            state,
            self.config.keep_last,
            reason,
            is_best,
        )

    def _wait_if_paused(self) -> None:
        if self._running.is_set():
            return
        t0 = time.perf_counter()
        self._running.wait()
        if self._progress is not None:
            self._progress.paused += time.perf_counter() - t0

    def _loop(
        self,
        model: Any,
        optimizer: Any,
        data: dict[str, EncodedSplit],
        state: dict[str, Any],
        total_steps: int,
        spe: int,
    ) -> Event:
        cfg, train, valid, test = self.config, data["train"], data.get("valid"), data.get("test")
        train_step = TrainStep(model, optimizer, self._loss_fn, cfg.grad_clip, self.group)
        cache_limit = int(cfg.clear_cache_gb * GB)
        lengths = train.lengths
        rank, world = self.group.rank(), self.group.size()
        model.train()
        self._progress = progress = Progress(total_steps, spe, cfg.ram_warn_share)
        guard = DivergenceGuard(cfg.max_bad_steps, cfg.learning_rate)

        def record_validation(split: EncodedSplit) -> bool:
            loss, tokens, secs = self._validate(model, split, cfg.val_batches)
            best = state["best_val_loss"] is None or loss < state["best_val_loss"]
            state["val_loss"] = loss
            if best:
                state["best_val_loss"], state["best_step"] = loss, state["step"]
            self._record.emit(ValidationResult(state["step"], loss, tokens, best, secs))
            return best

        if valid is not None and state["step"] == 0:
            record_validation(valid)  # the starting point of the validation curve
            state["val_loss"] = None

        stopped = False
        while state["step"] < total_steps and not stopped:
            epoch = state["epoch"]
            batches = epoch_batches(lengths, cfg.batch_size, cfg.seed, epoch, rank, world)
            # The epoch's order is rebuilt from (seed, epoch) each epoch, so a resume can rebuild it too.
            while state["epoch"] == epoch and state["step"] < total_steps:
                self._wait_if_paused()
                if self._stop.is_set():
                    stopped = True
                    break
                t0 = time.perf_counter()
                step = state["step"] + 1
                mx.random.seed(cfg.seed * 1_000_003 + step)  # dropout depends on (seed, step) only
                group = batches[state["batch_pos"] : state["batch_pos"] + cfg.grad_accumulation_steps]
                result = train_step(make_batch(train, idx) for idx in group)
                for warning in guard.check(result, step):
                    self._record.warn(warning, step)
                tokens, loss_sum = result.tokens, result.loss_sum
                self.optimizer_updates += result.updated
                state["step"] = step
                state["batch_pos"] += len(group)
                if state["batch_pos"] >= len(batches):
                    state["epoch"] += 1
                    state["batch_pos"] = 0
                state["trained_tokens"] += tokens
                state["val_loss"] = None
                progress.add_step(loss_sum, tokens, time.perf_counter() - t0)
                if step % cfg.steps_per_report == 0 or step == total_steps:
                    self._record.emit(progress.report(step, train_step.learning_rate(), state["trained_tokens"]))
                    memory_warning = progress.memory_warning()
                    if memory_warning:
                        self._record.warn(memory_warning, step)

                is_best = False
                if valid is not None and step % cfg.steps_per_eval == 0 and step != total_steps:
                    is_best = record_validation(valid)
                periodic = step % cfg.save_every == 0 and step != total_steps  # the end saves the last step
                if periodic or is_best:
                    self._save(model, optimizer, state, "periodic" if periodic else "best", is_best)
                clear_cache_if_above(cache_limit)

        if stopped:
            self._save(model, optimizer, state, "stop", False)
            return self._finish(state, True, progress, None)
        is_best = record_validation(valid) if valid is not None else False
        self._save(model, optimizer, state, "end", is_best)
        test_loss = None
        if cfg.test and test is not None:
            test_loss, tokens, secs = self._validate(model, test, cfg.test_batches)
            self._record.emit(ValidationResult(state["step"], test_loss, tokens, False, secs, split="test"))
        return self._finish(state, False, progress, test_loss)

    def _finish(self, state: dict[str, Any], stopped: bool, progress: Progress, test_loss: float | None) -> Finished:
        event = Finished(
            state["step"],
            stopped,
            finite_or_none(progress.last_loss),
            state.get("val_loss"),
            state.get("best_val_loss"),
            test_loss,
            self.config.adapter_path,
            progress.elapsed,
        )
        self._record.emit(event)
        return event
