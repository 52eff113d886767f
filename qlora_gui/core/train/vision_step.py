"""A micro-batch of picture rows and the loss on it, in the shapes the training step already takes.

A batch is the text batch of its rows (`batching.make_batch`: inputs, trained positions, targets, weights)
followed by its pictures' pixels, read again from the files (and, for Qwen2-VL, each picture's patch grid).
The loss is the same summed cross-entropy over trained positions as `losses.token_loss`, so accumulation
stays token-weighted and every row counts: the step, optimizer, checkpoints and resume are the text ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from ..data.batching import Batch, make_batch
from ..data.encode import EncodedSplit
from ..data.vision_encode import VisionSplit, open_images
from ..model.vision_model import QWEN_FAMILIES, language_logits, picture_inputs


@dataclass
class VisionBatch(Batch):
    # The language model's inputs besides the tokens (vision_model.picture_inputs): the embeddings with the
    # pictures' features in place (and Qwen's rope positions), lazy MLX arrays.
    media: tuple[mx.array, ...] = field(default_factory=tuple)

    def arrays(self) -> tuple[mx.array, ...]:
        return super().arrays() + self.media


def picture_arrays(processor: Any, family: str, paths: list[str]) -> tuple[np.ndarray, ...]:
    """The pixels the model's image processor makes of these pictures, in order (and Qwen's patch grids)."""
    out = processor.image_processor(open_images(paths), return_tensors="np")
    pixels = np.asarray(out["pixel_values"], dtype=np.float32)
    if family in QWEN_FAMILIES:
        return pixels, np.asarray(out["image_grid_thw"], dtype=np.int32)
    return (pixels,)


class VisionBatcher:
    """make_batch for picture rows: the rows' tokens, then the frozen part of the model's forward on them and
    their pictures (the embeddings with the pictures' features in place)."""

    def __init__(self, processor: Any, family: str, model: nn.Module):
        self.processor, self.family, self.model = processor, family, model

    def __call__(self, split: EncodedSplit, idx: np.ndarray) -> VisionBatch:
        assert isinstance(split, VisionSplit)  # the loop hands over the splits this run encoded
        text = make_batch(split, idx)
        paths = [p for i in idx for p in split.images[i]]
        pictures = [mx.array(a) for a in picture_arrays(self.processor, self.family, paths)]
        pixels, grid = pictures[0], (pictures[1] if len(pictures) > 1 else None)
        media = picture_inputs(self.model, self.family, mx.array(text.inputs), pixels, grid)
        return VisionBatch(
            text.inputs, text.positions, text.targets, text.weights, reference=text.reference, media=media
        )


class VisionLoss:
    """(model, inputs, positions, targets, weights, embeddings[, rope positions]) -> (summed cross-entropy,
    trained tokens): the language model alone, so the step compiles like a text model's."""

    def __init__(self, family: str):
        self.family = family

    def __call__(
        self,
        model: nn.Module,
        inputs: mx.array,
        positions: mx.array,
        targets: mx.array,
        weights: mx.array,
        embeds: mx.array,
        rope_positions: mx.array | None = None,
    ) -> tuple[mx.array, mx.array]:
        logits = language_logits(model, self.family, inputs, embeds, rope_positions)
        logits = mx.take(logits.reshape(-1, logits.shape[-1]), positions, axis=0).astype(mx.float32)
        ce = nn.losses.cross_entropy(logits, targets) * weights
        return ce.sum(), weights.sum()
