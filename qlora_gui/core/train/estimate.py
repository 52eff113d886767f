"""A rough memory estimate for a model and settings, before anything loads.

Weights at their stored precision, the adapters with their gradients and the
optimizer's state (two moments for Adam), and activations for one micro-batch: each block's kept for the
backward pass (only its input with gradient checkpointing, plus one block being
recomputed), and one chunk of float32 logits (the loss never makes more, see
`losses.py`). It is a guide for the settings form, not a promise.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..config import TrainConfig, default_of
from .losses import chunk_positions
from .optimizer import state_copies

LOGIT_COPIES = 3  # a chunk's float32 logits, its softmax and its gradient
DEFAULT_LORA_TARGETS = 7  # q, k, v, o, gate, up, down in a Llama-style block


@dataclass
class MemoryEstimate:
    weights: int
    adapters: int
    activations: int

    @property
    def total(self) -> int:
        return self.weights + self.adapters + self.activations


def estimate_memory(
    model_dir: Path,
    cfg: TrainConfig,
    parameters: int | None = None,
    stored_bits: int | None = None,
    longest_row: int | None = None,
) -> MemoryEstimate | None:
    """`longest_row` (tokens, from the data report) bounds the batch width better than max_seq_length."""
    try:
        mc = json.loads((Path(model_dir) / "config.json").read_text())
    except (OSError, ValueError):
        return None
    text = mc.get("text_config", mc)
    hidden = int(text.get("hidden_size", 0))
    layers = int(text.get("num_hidden_layers", 0))
    vocab = int(text.get("vocab_size", 0))
    inter = int(text.get("intermediate_size", 4 * hidden) or 4 * hidden)
    if not (hidden and layers and vocab):
        return None
    if parameters is None:
        parameters = layers * (4 * hidden * hidden + 3 * hidden * inter) + 2 * vocab * hidden
    bits = cfg.quantize_bits or stored_bits
    if bits:
        per_param = bits / 8 + 4 / cfg.quantize_group_size  # fp16 scale and bias per group
    else:
        per_param = 4 if str(mc.get("torch_dtype", "")).endswith("float32") else 2
    weights = int(parameters * per_param)
    adapted = layers if cfg.num_layers == -1 else min(cfg.num_layers, layers)
    rank = int(cfg.lora_parameters.get("rank", default_of("lora_parameters.rank")))
    lora_params = adapted * DEFAULT_LORA_TARGETS * rank * (hidden + max(hidden, inter))
    adapters = int(lora_params * 4 * (2 + state_copies(cfg)))  # weights, gradients, optimizer state, float32
    if cfg.fine_tune_type == "full":  # the layers' own weights (counted above), their gradients and state
        adapters = int(adapted * (4 * hidden * hidden + 3 * hidden * inter) * per_param * (1 + state_copies(cfg)))
    width = min(cfg.max_seq_length, longest_row) if longest_row else cfg.max_seq_length
    tokens = cfg.batch_size * width
    block = tokens * (10 * hidden + 2 * inter) * 2  # one block's activations, 16-bit
    kept = tokens * hidden * 2 * layers + block if cfg.grad_checkpoint else block * layers
    logits = min(tokens, chunk_positions(vocab, cfg.grad_checkpoint)) * vocab * 4 * LOGIT_COPIES
    return MemoryEstimate(weights, adapters, int(kept + logits))
