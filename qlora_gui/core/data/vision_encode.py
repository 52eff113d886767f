"""Picture rows as a vision-language model reads them: token ids with each picture's tokens in place, the
positions to train, and the pictures each row shows.

A row goes through the model's real chat template like every chat row (`encode.py`): every assistant turn is
found in the rendered text and trained, markers included. The template writes one marker per picture; the
model's processor then puts the picture's tokens in its place (Qwen2-VL: one <|image_pad|> per 2x2 patches;
Gemma 3: <start_of_image>, 256 soft tokens, <end_of_image>). The two token sequences are aligned, so every
token the processor added is a picture's (never trained) and every trained token is the template's own.
Pixels are not kept: a batch reads its pictures again (`vision_batch.py`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from difflib import SequenceMatcher
from pathlib import Path
from typing import Any

import numpy as np

from .encode import EncodedSplit, _encode_turns
from .intake import RawSplit
from .problems import Problems
from .ragged import Ragged
from .vision_rows import VISION, image_paths


@dataclass
class VisionSplit(EncodedSplit):
    """Encoded picture rows, with each row's picture files (absolute paths) in order."""

    images: list[list[str]] = field(default_factory=list)
    image_tokens: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # picture tokens per row


def text_tokenizer(processor: Any) -> Any:
    """The processor's tokenizer as the text encoder takes it (mlx-lm's wrapper, as `load_tokenizer` gives)."""
    from mlx_lm.tokenizer_utils import TokenizerWrapper

    return TokenizerWrapper(processor.tokenizer)


def image_marker(processor: Any) -> str:
    """The text the chat template writes for one picture (what the processor expands)."""
    return getattr(processor, "boi_token", None) or processor.image_token


def image_token_id(processor: Any) -> int:
    """The id of the tokens that stand for a picture's features."""
    return int(processor.image_token_id)


def open_images(paths: list[str]) -> list[Any]:
    from PIL import Image

    out = []
    for path in paths:
        with Image.open(path) as image:
            out.append(image.convert("RGB"))
    return out


def expand_row(
    processor: Any, text: str, ids: np.ndarray, trained: np.ndarray, images: list[Any]
) -> tuple[np.ndarray, np.ndarray] | str:
    """(ids, trained) with the pictures' tokens in place, or why the row cannot be expanded."""
    out = processor(text=[text], images=images, add_special_tokens=False, return_tensors="np")
    full = np.asarray(out["input_ids"]).reshape(-1).astype(np.int32)
    matcher = SequenceMatcher(None, ids.tolist(), full.tolist(), autojunk=False)
    full_trained = np.zeros(len(full), dtype=bool)
    covered = np.zeros(len(ids), dtype=bool)
    for a, b, size in matcher.get_matching_blocks():
        full_trained[b : b + size] = trained[a : a + size]
        covered[a : a + size] = True
    if np.any(trained & ~covered):
        return "the model's processor rewrote text that is trained (an assistant turn); the row cannot be masked"
    return full, full_trained


def encode_vision_split(
    raw: RawSplit, processor: Any, max_seq_length: int, mask_prompt: bool, problems: Problems
) -> VisionSplit:
    """Every picture row of a split, expanded by the processor; problems go on the row's line."""
    tokenizer = text_tokenizer(processor)
    folder = Path(raw.file).parent
    marker, picture_id = image_marker(processor), image_token_id(processor)
    rows = list(raw.rows)
    ids_out: list[np.ndarray] = []
    trained_out: list[np.ndarray] = []
    full_lengths: list[int] = []
    lines: list[int] = []
    images_out: list[list[str]] = []
    picture_tokens: list[int] = []
    truncated = no_target = 0

    def reject(i: int, message: str) -> None:
        problems.add(raw.file, raw.lines[i], message)

    for i, encoded in _encode_turns(rows, VISION, tokenizer, mask_prompt, reject, keep_text=True):
        paths = [str(p) for p in image_paths(rows[i], folder)]
        markers = encoded.text.count(marker)
        if markers != len(paths):
            reject(
                i,
                f"the chat template wrote {markers} picture marker(s) ({marker}) for {len(paths)} image(s); "
                'give one {"type": "image"} part per image, in turns the template prints',
            )
            continue
        trained = encoded.trained if mask_prompt else np.ones(len(encoded.ids), dtype=bool)
        try:
            expanded = expand_row(processor, encoded.text, encoded.ids, trained, open_images(paths))
        except Exception as e:  # an image processor can refuse a picture in many ways
            reject(i, f"the model's processor cannot read this row's pictures ({type(e).__name__}: {e})")
            continue
        if isinstance(expanded, str):
            reject(i, expanded)
            continue
        ids, mask = expanded
        mask &= ids != picture_id  # a picture's tokens are never targets, whatever the mask
        pictures = int(np.count_nonzero(ids == picture_id))
        if len(ids) > max_seq_length:
            if np.count_nonzero(ids[:max_seq_length] == picture_id) != pictures:
                reject(
                    i,
                    f"the row is {len(ids)} tokens with its pictures ({pictures} picture tokens) and "
                    f"max_seq_length={max_seq_length} would cut a picture; raise max_seq_length or use smaller "
                    "images",
                )
                continue
            truncated += 1
        full_lengths.append(len(ids))
        ids, mask = ids[:max_seq_length], mask[:max_seq_length]
        no_target += not mask[1:].any()
        ids_out.append(ids)
        trained_out.append(mask)
        lines.append(raw.lines[i])
        images_out.append(paths)
        picture_tokens.append(pictures)
    return VisionSplit(
        Ragged.from_rows(ids_out, np.int32),
        Ragged.from_rows(trained_out, np.bool_),
        np.asarray(full_lengths, dtype=np.int64),
        lines,
        truncated=truncated,
        no_target_rows=no_target,
        images=images_out,
        image_tokens=np.asarray(picture_tokens, dtype=np.int64),
    )
