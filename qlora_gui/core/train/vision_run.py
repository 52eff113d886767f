"""A run on a vision-language model: its processor checks and encodes the picture rows, mlx-vlm's classes hold
the model, and the text run's loop does the rest (steps, accumulation, validation, checkpoints, resume).

The Trainer hands over here when the model folder has a vision tower (`vision_model.is_vision_model`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..config import TrainConfig
from ..data.batching import epoch_batches, padding_share, steps_per_epoch
from ..data.dataset import DataReport, training_data
from ..errors import ConfigError, DataError
from ..events import Event, RunStarted
from ..gc_policy import keep_long_lived
from ..memory import apply_limits, blas_in_use, device_name, reset_peak
from ..model.loader import load_start_adapter, parameter_counts
from ..model.vision_model import (
    FAMILIES,
    add_vision_adapters,
    load_processor,
    load_vision_base,
    vision_adapter_config,
    vision_family,
)
from ..runs.run_folder import RunFolder
from .loop import RunControl, TrainingLoop
from .run_record import RunRecord
from .vision_samples import PictureAnswerer, choose_picture_prompts
from .vision_step import VisionBatcher, VisionLoss


def _refuse_unsupported(cfg: TrainConfig, group: Any) -> None:
    if cfg.train_mode != "sft":
        raise ConfigError(
            f"setting 'train_mode': {cfg.train_mode} is not available for vision-language models; use sft",
            setting="train_mode",
            why="vision-language models train with sft",
        )
    if group.size() > 1:
        raise ConfigError(
            "vision-language models train on one machine; remove the other machines from the run",
            setting="hostfile",
            why="vision-language models train on one machine",
        )


def run_vision(
    cfg: TrainConfig,
    record: RunRecord,
    group: Any,
    control: RunControl,
    run: RunFolder,
    resume_path: Path | None,
    model_path: Path,
    on_ready: Callable[[TrainingLoop, DataReport], None],
) -> Event:
    """Check the picture rows, load the model, add adapters and train; the Finished event. `on_ready` gets the
    loop and the data report before the first step (the Trainer's stop and counters read them)."""
    _refuse_unsupported(cfg, group)
    family = vision_family(model_path)
    processor = load_processor(model_path)
    report, data, rows = training_data(
        cfg.data, processor, cfg.max_seq_length, cfg.mask_prompt, cfg.batch_size, cfg.valid_fraction, cfg.seed, True
    )
    if report.format != "vision":
        raise DataError(
            f"{report.source}: {FAMILIES[family]} is a vision-language model but these rows carry no pictures; "
            'give {"images": [...], "messages": [...]} rows, or pick a text model for text rows',
            [],
        )
    apply_limits(cfg.memory_limit_gb)
    reset_peak(keep_run_peak=False)
    loaded = load_vision_base(model_path, processor, cfg.quantize_bits, cfg.quantize_group_size)
    model = loaded.model
    layers_note, keys = add_vision_adapters(model, cfg)
    notes = list(loaded.notes) + ([layers_note] if layers_note else [])
    if cfg.resume_adapter_file and resume_path is None:
        notes.append(load_start_adapter(model, Path(cfg.resume_adapter_file)))
    trainable, total_params = parameter_counts(model)
    prompts, prompts_note = choose_picture_prompts(cfg.sample_answers, cfg.sample_prompts, rows, cfg.seed)

    train, valid = data["train"], data.get("valid")
    first_epoch = epoch_batches(train.lengths, cfg.batch_size, cfg.seed, 0)
    spe = steps_per_epoch(len(first_epoch), cfg.grad_accumulation_steps)
    total_steps = cfg.iters or cfg.epochs * spe
    config = vision_adapter_config(cfg, model_path, loaded, keys, family)
    loop = TrainingLoop(
        cfg,
        model,
        VisionLoss(family),
        data,
        total_steps,
        spe,
        group,
        record,
        config,
        control,
        PictureAnswerer(processor, family, loaded.config, prompts, cfg.sample_tokens) if prompts else None,
        batcher=VisionBatcher(processor, family, model),
        # Measured on the tiny models (20 steps): 0.9 s uncompiled, 3.3 s compiled; the frozen part (vision
        # tower, projector) already runs outside the gradient, and picture rows vary in shape.
        compiled=False,
    )
    on_ready(loop, report)
    if resume_path is not None:
        loop.restore(resume_path)
    record.open(run, cfg)
    record.emit(
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
            quant_path="MLX quantized kernels" if loaded.quantization else "",
            loss_path=f"loss: full logits of the {FAMILIES[family]} language model, pictures in place, causal mask",
            backend=device_name(),
        )
    )
    for note in notes + report.warnings:
        record.warn(note)
    if prompts_note:  # which prompts are answered is information; that none are is a warning
        record.warn(prompts_note, info=bool(prompts))
    keep_long_lived()
    return loop.run()
