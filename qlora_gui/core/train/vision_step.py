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
from ..model.vision_model import QWEN_FAMILIES, vision_logits


@dataclass
class VisionBatch(Batch):
    media: tuple[np.ndarray, ...] = field(default_factory=tuple)  # pixels (and Qwen's grids) of its pictures

    def arrays(self) -> tuple[mx.array, ...]:
        return super().arrays() + tuple(mx.array(a) for a in self.media)


def picture_arrays(processor: Any, family: str, paths: list[str]) -> tuple[np.ndarray, ...]:
    """The pixels the model's image processor makes of these pictures, in order (and Qwen's patch grids)."""
    out = processor.image_processor(open_images(paths), return_tensors="np")
    pixels = np.asarray(out["pixel_values"], dtype=np.float32)
    if family in QWEN_FAMILIES:
        return pixels, np.asarray(out["image_grid_thw"], dtype=np.int32)
    return (pixels,)


class VisionBatcher:
    """make_batch for picture rows: the rows' tokens, then their pictures' pixels."""

    def __init__(self, processor: Any, family: str):
        self.processor, self.family = processor, family

    def __call__(self, split: EncodedSplit, idx: np.ndarray) -> VisionBatch:
        assert isinstance(split, VisionSplit)  # the loop hands over the splits this run encoded
        text = make_batch(split, idx)
        paths = [p for i in idx for p in split.images[i]]
        media = picture_arrays(self.processor, self.family, paths)
        return VisionBatch(text.inputs, text.positions, text.targets, text.weights, text.reference, media)


class VisionLoss:
    """(model, inputs, positions, targets, weights, pixels[, grids]) -> (summed cross-entropy, trained tokens)."""

    def __init__(self, family: str):
        self.family = family

    def __call__(
        self,
        model: nn.Module,
        inputs: mx.array,
        positions: mx.array,
        targets: mx.array,
        weights: mx.array,
        pixels: mx.array | None = None,
        grid: mx.array | None = None,
    ) -> tuple[mx.array, mx.array]:
        logits = vision_logits(model, self.family, inputs, pixels, grid)
        logits = mx.take(logits.reshape(-1, logits.shape[-1]), positions, axis=0).astype(mx.float32)
        ce = nn.losses.cross_entropy(logits, targets) * weights
        return ce.sum(), weights.sum()
