"""The model as training uses it: the base loaded, adapters added, the fastest paths chosen, and what was chosen."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import TrainConfig
from ..model.fast_quant import fast_path_available, use_fast_quantized_layers
from ..model.loader import LoadedModel, add_adapters, load_base, use_grad_checkpoint
from .grpo import GrpoLoss
from .losses import LossFn, chunked_loss_for
from .preference import PreferenceLoss


@dataclass
class PreparedModel:
    loaded: LoadedModel
    loss_fn: LossFn
    loss_path: str  # which loss computation runs, for the run's report
    quant_path: str  # how the quantized base is computed ("" for a float base)
    fewer_layers: bool  # the model has fewer layers than num_layers asked for: all of them are adapted
    notes: list[str] = field(default_factory=list)  # said as warnings when the run starts


def prepare_model(cfg: TrainConfig, model_path: Path, tokenizer: Any, loss_fn: LossFn | None = None) -> PreparedModel:
    """Load the base (quantized on load when asked), add adapters, pick the quantized-matmul path, the loss
    (the chunked one unless a loss is given) and gradient checkpointing. In the thread that will train."""
    loaded = load_base(model_path, cfg.quantize_bits, cfg.quantize_group_size, tokenizer, cfg.trust_remote_code)
    model = loaded.model
    layers_note = add_adapters(model, cfg)
    notes = list(loaded.notes) + ([layers_note] if layers_note else [])
    quant_path = ""
    if loaded.quantization:
        fast = use_fast_quantized_layers(model) if cfg.fast_quant and fast_path_available() else 0
        quant_path = f"dequantize + BLAS matmul ({fast} layers)" if fast else "MLX quantized kernels"
    loss_path = "loss: the given loss function"
    if loss_fn is None:
        loss_fn, loss_path = chunked_loss_for(model, memory_first=cfg.grad_checkpoint)
    elif isinstance(loss_fn, (PreferenceLoss, GrpoLoss)):
        loss_path = loss_fn.bind(model, memory_first=cfg.grad_checkpoint)  # before checkpointing: it probes
    if cfg.grad_checkpoint:
        notes.append(
            f"gradient checkpointing on {use_grad_checkpoint(model)} layers: less memory, "
            "about a third more time per step"
        )
    return PreparedModel(loaded, loss_fn, loss_path, quant_path, bool(layers_note), notes)
