"""The memory estimate follows the settings the trainer acts on: checkpointing, and chunk-sized logits."""

from __future__ import annotations

import dataclasses
import json

from qlora_gui.core.config import TrainConfig
from qlora_gui.core.train.estimate import LOGIT_COPIES, estimate_memory
from qlora_gui.core.train.losses import chunk_positions


def test_checkpointing_and_the_chunked_loss_shrink_the_activations(tmp_path):
    (tmp_path / "config.json").write_text(
        json.dumps(
            {
                "hidden_size": 2048,
                "num_hidden_layers": 16,
                "intermediate_size": 8192,
                "vocab_size": 128_256,
                "torch_dtype": "bfloat16",
            }
        )
    )
    cfg = TrainConfig(model="m", data="d", batch_size=8, max_seq_length=512)
    plain = estimate_memory(tmp_path, cfg)
    checkpointed = estimate_memory(tmp_path, dataclasses.replace(cfg, grad_checkpoint=True))
    assert checkpointed.weights == plain.weights and checkpointed.adapters == plain.adapters
    assert checkpointed.activations < 0.35 * plain.activations
    # 8 x 512 positions x 128,256 float32 logits would be 16.8 GB; the loss holds one chunk at a time.
    chunk_bytes = chunk_positions(128_256) * 128_256 * 4 * LOGIT_COPIES
    assert plain.activations < 8 * 512 * 16 * (10 * 2048 + 2 * 8192) * 2 + chunk_bytes + 1
    assert chunk_bytes < 1e9
