"""Chat rows with pictures, as mlx-vlm reads them, checked by file and line.

    {"images": ["img/a.png"], "messages": [{"role": "user", "content": "What colour?"}, ...]}
    {"image": "img/a.png", "messages": [...]}
    {"images": [...], "messages": [{"role": "user", "content": [{"type": "image"}, {"type": "text", ...}]}, ...]}
    {"image": "img/a.png", "question": "What colour?", "answer": "red"}

Paths are relative to the data file's folder (or absolute). When no turn has an image part, the pictures go at
the start of the first user turn, as mlx-vlm puts them; when turns have image parts, there must be exactly one
per picture. Video and audio rows are refused: only pictures are trained here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .media import PART_TYPES, media_parts
from .rows import CHAT, SampleText, TurnsFormat, _cut, _turn_errors, _type_name

IMAGE_PART = {"type": "image"}


def _images_value(row: dict[str, Any]) -> Any:
    return row["images"] if "images" in row else row.get("image")


def image_list(row: dict[str, Any]) -> list[str]:
    """The row's picture paths as written (one path or a list)."""
    value = _images_value(row)
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def image_paths(row: dict[str, Any], folder: Path) -> list[Path]:
    """The row's pictures as paths, relative ones taken from the data file's folder."""
    return [p if p.is_absolute() else folder / p for p in (Path(s).expanduser() for s in image_list(row))]


def _is_image_part(part: Any) -> bool:
    return isinstance(part, dict) and PART_TYPES.get(part.get("type", "")) == "image"


def _raw_turns(row: dict[str, Any]) -> list[Any]:
    if "messages" in row:
        return row["messages"]
    return [{"role": "user", "content": row["question"]}, {"role": "assistant", "content": row["answer"]}]


def _image_part_count(turns: list[Any]) -> int:
    return sum(
        _is_image_part(part)
        for t in turns
        if isinstance(t, dict) and isinstance(t.get("content"), list)
        for part in t["content"]
    )


def readable_image_problem(path: Path) -> str | None:
    """Why this picture cannot be read, or None. Decoded fully, so a truncated file is found now."""
    if not path.is_file():
        return f"image {path} not found; the path is taken from the data file's folder"
    try:
        from PIL import Image
    except ImportError:  # the vision extra is missing: the model check says so; here a readable file suffices
        return None if path.stat().st_size else f"image {path} is empty"
    try:
        with Image.open(path) as image:
            image.load()
    except Exception as e:  # PIL raises many kinds for a bad file
        return f"image {path} cannot be read as a picture ({type(e).__name__}: {e}); replace or remove it"
    return None


class VisionFormat(TurnsFormat):
    """Chat or question/answer rows that carry pictures."""

    name = "vision"
    keys = ("images",)

    def matches(self, row: dict[str, Any]) -> bool:
        has_turns = "messages" in row or ("question" in row and "answer" in row)
        return has_turns and any(kind == "image" for kind, _ in media_parts(row))

    @property
    def keys_shown(self) -> str:
        return "'images'+'messages'"

    def as_messages(self, row: dict[str, Any]) -> list[dict[str, Any]]:
        """The turns as the chat template takes them: text as a string, a turn with pictures as a list of
        {"type": "image"} and {"type": "text"} parts. Pictures no turn places go before the first user turn's
        text."""
        turns = []
        for turn in _raw_turns(row):
            turn = dict(turn)
            content = turn.get("content")
            if isinstance(content, list):
                parts = [
                    IMAGE_PART if _is_image_part(p) else {"type": "text", "text": p.get("text", "")}
                    for p in content
                    if isinstance(p, dict)
                ]
                has_image = any(p is IMAGE_PART for p in parts)
                turn["content"] = parts if has_image else "".join(p["text"] for p in parts)
            turns.append(turn)
        if _image_part_count(turns) == 0:
            first_user = next((t for t in turns if t.get("role") == "user"), None)
            if first_user is not None:
                text = first_user.get("content") or ""
                images = [IMAGE_PART] * len(image_list(row))
                first_user["content"] = images + ([{"type": "text", "text": text}] if text else [])
        return turns

    def text_turns(self, row: dict[str, Any]) -> list[dict[str, Any]]:
        """The turns with their text alone, for previews and the playground's sample."""
        out = []
        for turn in self.as_messages(row):
            content = turn.get("content")
            if isinstance(content, list):
                turn = dict(turn, content="".join(p.get("text", "") for p in content))
            out.append(turn)
        return out

    def char_length(self, row: dict[str, Any]) -> int:
        return sum(len(t.get("content") or "") for t in self.text_turns(row))

    def sample(self, row: dict[str, Any]) -> SampleText:
        return CHAT.sample({"messages": self.text_turns(row)})

    def check(self, row: dict[str, Any], mask_prompt: bool) -> list[str]:
        errors: list[str] = []
        value = _images_value(row)
        key = "images" if "images" in row else "image"
        if isinstance(value, list):
            if not all(isinstance(v, str) and v.strip() for v in value):
                errors.append(f"'{key}' must be a list of image paths (strings)")
        elif not (isinstance(value, str) and value.strip()):
            errors.append(f"'{key}' must be an image path or a list of them, got {_type_name(value)}")
        turns = _raw_turns(row)
        if "messages" in row:
            if not isinstance(turns, list) or not turns:
                return errors + ['\'messages\' must be a non-empty list of {"role", "content"} turns']
            for i, turn in enumerate(turns):
                errors += [e for e in _turn_errors(f"messages[{i}]", turn) if "'content' must be" not in e]
                content = turn.get("content") if isinstance(turn, dict) else None
                if isinstance(content, list) and not all(
                    isinstance(p, dict) and (_is_image_part(p) or isinstance(p.get("text"), str)) for p in content
                ):
                    errors.append(f'messages[{i}] \'content\' parts must be {{"type": "text"}} or image parts')
        else:
            for key in ("question", "answer"):
                if not isinstance(row[key], str):
                    errors.append(f"'{key}' must be a string, got {_type_name(row[key])}")
        if errors:
            return errors
        placed, given = _image_part_count(turns), len(image_list(row))
        if placed and placed != given:
            errors.append(
                f"the turns hold {placed} image part(s) but the row gives {given} image(s); give one path "
                'per {"type": "image"} part'
            )
        if mask_prompt and not any(t.get("role") == "assistant" for t in turns):
            errors.append("no assistant turn: with 'train on completions only' this row would train on nothing")
        return errors

    def check_files(self, row: dict[str, Any], folder: Path) -> list[str]:
        """Every picture exists and decodes."""
        return [p for p in (readable_image_problem(path) for path in image_paths(row, folder)) if p]

    def preview(self, row: dict[str, Any], width: int = 240) -> dict[str, str]:
        turns = self.text_turns(row)
        prompt = next((t["content"] for t in turns if t.get("role") == "user" and t.get("content")), "")
        answer = next((t["content"] for t in reversed(turns) if t.get("role") == "assistant" and t.get("content")), "")
        return {
            "images": ", ".join(image_list(row)),
            "user": _cut(prompt, width),
            "assistant": _cut(answer, width),
        }


VISION = VisionFormat()
