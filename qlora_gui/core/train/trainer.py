"""A training run from settings to the end: checks, model, run folder, then the loop (loop.py).

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

import mlx.core as mx

from ..config import TrainConfig
from ..data.batching import epoch_batches, padding_share, steps_per_epoch
from ..data.dataset import DataReport, training_data
from ..data.hf_dataset import write_hf_dataset
from ..distributed import agreement
from ..errors import DataError, TrainingError, UserError
from ..events import Event, EventCallback, Failed, RunStarted
from ..gc_policy import keep_long_lived
from ..memory import apply_limits, blas_in_use, device_name, reset_peak
from ..model.loader import adapter_config, load_start_adapter, parameter_counts
from ..model.model_files import load_tokenizer, resolve_model_path
from ..model.vision_model import is_vision_model
from ..runs.run_folder import RunFolder
from ..runs.run_plan import resume_source
from .grpo import GrpoLoss
from .grpo_mode import GrpoRollout, run_rewards
from .loop import RunControl, TrainingLoop
from .losses import LossFn
from .preference_mode import LazyReference, check_mode_fits_data, preference_loss, share_prefixes
from .progress import Progress
from .run_record import RunRecord
from .sample_answers import SampleAnswerer, choose_prompts
from .training_model import prepare_model
from .vision_run import run_vision


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
        self.loop: TrainingLoop | None = None
        self.data_report: DataReport | None = None
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
        event = Failed(message=message, details=details, exit_code=exit_code, problems=problems or [])
        self._record.emit(event)
        return event

    def _run(self) -> Event:
        cfg = self.config
        cfg.validate()
        run = RunFolder(cfg.adapter_path)
        # Rank 0 owns the run folder and checks it; the other ranks only read their copy of its checkpoint.
        resume_path = (
            resume_source(cfg, self._resume_from)
            if self._record.is_main
            else agreement.rank_resume_source(cfg.adapter_path, cfg.resume, self._resume_from)
        )
        if cfg.hf_dataset:  # the rows go into the run folder once; the run (and a resume) reads them there
            cfg.data = str(write_hf_dataset(cfg.hf_dataset, run.hf_dataset, cfg.test))
        model_path = resolve_model_path(cfg.model)
        if is_vision_model(model_path):  # pictures and words: mlx-vlm's classes in this loop (vision_run.py)
            control = RunControl(self._stop.is_set, self._wait_if_paused)
            return run_vision(cfg, self._record, self.group, control, run, resume_path, model_path, self._ready)
        tokenizer = load_tokenizer(model_path, cfg.trust_remote_code)
        # Every data problem surfaces before any weights load.
        self.data_report, data, rows = training_data(
            cfg.data, tokenizer, cfg.max_seq_length, cfg.mask_prompt, cfg.batch_size, cfg.valid_fraction, cfg.seed
        )
        check_mode_fits_data(cfg.train_mode, self.data_report.format, cfg.data)
        rewards = run_rewards(cfg, rows) if cfg.train_mode == "grpo" else None  # a bad reward file: before weights
        prompts, prompts_note = choose_prompts(cfg.sample_answers, cfg.sample_prompts, rows, cfg.seed)
        # The template is applied to the prompts when training applied it (not for text rows).
        chat = self.data_report.format != "text"
        answerer = SampleAnswerer(tokenizer, prompts, chat, cfg.sample_tokens) if prompts else None
        apply_limits(cfg.memory_limit_gb)
        reset_peak(keep_run_peak=False)  # the peaks this run reports are its own (the app runs several)
        prepared = prepare_model(cfg, model_path, tokenizer, self._requested_loss or preference_loss(cfg))
        loaded, model, notes = prepared.loaded, prepared.loaded.model, prepared.notes
        if cfg.resume_adapter_file and resume_path is None:  # a resume takes its checkpoint's weights instead
            notes.append(load_start_adapter(model, Path(cfg.resume_adapter_file)))
        trainable, total_params = parameter_counts(model)

        train, valid = data["train"], data.get("valid")
        world, rank = self.group.size(), self.group.rank()
        first_epoch = epoch_batches(train.lengths, cfg.batch_size, cfg.seed, 0, rank, world)
        spe = steps_per_epoch(len(first_epoch), cfg.grad_accumulation_steps)
        total_steps = cfg.iters or cfg.epochs * spe
        config = adapter_config(cfg, model_path, loaded)
        if prepared.fewer_layers:  # what was adapted, for mlx-lm versions that refuse more layers than the model has
            config["num_layers"] = len(model.layers)
        # The playground applies the chat template only when training did (not for text rows).
        config["data_format"] = self.data_report.format if self.data_report else None
        control = RunControl(self._stop.is_set, self._wait_if_paused)
        if world > 1:  # every rank stops and pauses at the same step, whichever of them was asked
            agreed = agreement.AgreedControl(self.group, self._stop.is_set, lambda: self.paused)
            control = RunControl(agreed.stop_requested, agreed.wait_if_paused)
        share_prefixes(prepared.loss_fn, data)  # pairs: each pair's prompt computed once, where the model allows
        reference = None
        if cfg.train_mode == "dpo":  # the base's log-probabilities, as pairs are first read (the same on resume)
            reference = LazyReference(model, prepared.loss_fn, cfg.batch_size, cfg.seed, world)
            reference.start({k: v for k, v in data.items() if k != "test" or cfg.test})
        # On several machines some settings differ from the ones asked for (said in the notes).
        loop_cfg, machine_notes = agreement.settings_on_ranks(cfg, world, run.path if resume_path else None)
        rollout = None
        if rewards is not None and isinstance(prepared.loss_fn, GrpoLoss):
            rollout = GrpoRollout(loop_cfg, tokenizer, rewards, prepared.loss_fn, rows)
        notes += machine_notes
        self.loop = loop = TrainingLoop(
            loop_cfg,
            model=model,
            loss_fn=prepared.loss_fn,
            data=data,
            total_steps=total_steps,
            steps_per_epoch=spe,
            group=self.group,
            record=self._record,
            adapter_config=config,
            control=control,
            answerer=answerer,
            reference=reference,
            rollout=rollout,
        )
        if resume_path is not None:
            loop.restore(resume_path)
        machines = agreement.machine_names(self.group) if world > 1 else []
        if world > 1:  # the same run everywhere, or a message naming the machine that differs, before any step
            facts = {"training rows": train.rows, "training tokens": float(train.lengths.sum()), "steps": total_steps}
            agreement.check_ranks_agree(self.group, {**facts, "the step to start at": loop.state.step}, machines)

        self._record.open(run, cfg)
        self._record.emit(
            RunStarted(
                run_dir=str(run.path),
                config=cfg.to_dict(),
                trainable_params=trainable,
                total_params=total_params,
                steps_per_epoch=spe,
                total_steps=total_steps,
                start_step=loop.state.step,
                train_rows=train.rows,
                valid_rows=valid.rows if valid else 0,
                padding_share=padding_share(train.lengths, first_epoch),
                blas=blas_in_use(),
                quant_path=prepared.quant_path,
                loss_path=prepared.loss_path,
                backend=device_name(),
                machines=machines,
            )
        )
        for note in notes + (self.data_report.warnings if self.data_report else []):
            self._record.warn(note)
        if prompts_note:  # which prompts are answered is information; that none are is a warning
            self._record.warn(prompts_note, info=bool(prompts))
        if reference is not None:
            self._record.warn(
                f"DPO reference: the base's log-probabilities of {reference.pairs} pairs' answers, each measured "
                "when a step or a validation first reads it",
                info=True,
            )
        if rollout is not None:
            self._record.warn(f"GRPO {rollout.rewards.description}; {cfg.group_size} answers per prompt", info=True)
        keep_long_lived()  # the data and the model stay for the whole run
        return loop.run()

    def _ready(self, loop: TrainingLoop, report: DataReport) -> None:
        self.loop, self.data_report = loop, report

    def _wait_if_paused(self, progress: Progress) -> None:
        if self._running.is_set():
            return
        t0 = time.perf_counter()
        self._running.wait()
        progress.paused += time.perf_counter() - t0

    @property
    def optimizer_updates(self) -> int:
        """Updates applied so far (a step whose micro-batches were all bad applies none)."""
        return self.loop.optimizer_updates if self.loop else 0
