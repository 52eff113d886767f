"""What pictures, videos or sounds a row carries, in every way mlx-vlm and the chat templates spell them.

A row is told apart by its keys ('images', 'image', 'video', 'audio', ...) and by its messages' content parts
({"type": "image"}, {"type": "image_url"}, ...). A text model would train such a row on its words alone and
never see the picture, so the intake refuses it unless the model is a vision-language model.
"""

from __future__ import annotations

from typing import Any, Literal

Kind = Literal["image", "video", "audio"]
MEDIA_KEYS: dict[str, Kind] = {
    "images": "image",
    "image": "image",
    "videos": "video",
    "video": "video",
    "audios": "audio",
    "audio": "audio",
}
PART_TYPES: dict[str, Kind] = {
    "image": "image",
    "image_url": "image",
    "input_image": "image",
    "video": "video",
    "video_url": "video",
    "audio": "audio",
    "input_audio": "audio",
}


def media_parts(row: dict[str, Any]) -> list[tuple[Kind, str]]:
    """(kind, where) for each place the row carries media: its keys, then its messages' content parts."""
    found: list[tuple[Kind, str]] = [(kind, f"'{key}'") for key, kind in MEDIA_KEYS.items() if row.get(key)]
    messages = row.get("messages")
    if isinstance(messages, list):
        for i, turn in enumerate(messages):
            content = turn.get("content") if isinstance(turn, dict) else None
            if not isinstance(content, list):
                continue
            for j, part in enumerate(content):
                kind = PART_TYPES.get(str(part.get("type"))) if isinstance(part, dict) else None
                if kind is not None:
                    found.append((kind, f'messages[{i}].content[{j}] {{"type": "{part["type"]}"}}'))
    return found


def has_media(row: dict[str, Any]) -> bool:
    return bool(media_parts(row))


def text_model_refusal(row: dict[str, Any], model: str = "") -> str | None:
    """Why a text model must not train this row, or None when the row is words alone."""
    parts = media_parts(row)
    if not parts:
        return None
    kinds = sorted({kind for kind, _ in parts})
    shown = "/".join(f"{k}s" for k in kinds)
    the_model = f"the model {model}" if model else "the model"
    return (
        f"the row carries {shown} ({parts[0][1]}) but {the_model} is a text model: it would train on the words "
        "alone and never see them. Pick a vision-language model (Qwen2-VL, Qwen2.5-VL, Gemma 3) or remove "
        f"the {shown} from the rows"
    )
