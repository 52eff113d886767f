"""Rows that carry images: refused with the reason when the model reads text alone, never trained as text."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import tiny_config, write_jsonl
from vision_models import square_png

from qlora_gui.core.data.dataset import check_data
from qlora_gui.core.data.intake import IntakeOptions, read_dataset
from qlora_gui.core.data.media import media_parts
from qlora_gui.core.data.vision_rows import VISION
from qlora_gui.core.events import Failed
from qlora_gui.core.train.trainer import Trainer

CHAT = [{"role": "user", "content": "What colour?"}, {"role": "assistant", "content": "red"}]
PARTS = [
    {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What colour?"}]},
    {"role": "assistant", "content": [{"type": "text", "text": "red"}]},
]
IMAGE_ROWS = [
    {"images": ["a.png"], "messages": CHAT},
    {"image": "a.png", "messages": CHAT},
    {"messages": PARTS},
    {"image": "a.png", "question": "What colour?", "answer": "red"},
    {"video": "a.mp4", "messages": CHAT},
]


def test_every_spelling_of_media_is_found():
    kinds = [sorted({k for k, _ in media_parts(r)}) for r in IMAGE_ROWS]
    assert kinds == [["image"], ["image"], ["image"], ["image"], ["video"]]
    assert media_parts({"messages": CHAT}) == []
    assert media_parts({"text": "an image of a cat"}) == []


def test_a_text_model_refuses_image_rows_by_file_and_line(tmp_path, tokenizer):
    rows = [{"messages": CHAT}] * 3 + IMAGE_ROWS
    path = write_jsonl(tmp_path / "train.jsonl", rows)
    check = check_data(path, tokenizer, valid_fraction=0.0)
    assert not check.report.usable
    lines = [p.line for p in check.report.problems]
    assert lines == [4, 5, 6, 7, 8]  # every row with media, none of the plain ones
    first = str(check.report.problems[0])
    assert first.startswith(f"{path}:4: the row carries images ('images')") and "text model" in first
    assert "messages[0].content[0]" in str(check.report.problems[2])
    assert "videos" in str(check.report.problems[4])


def test_training_a_text_model_on_image_rows_fails_before_any_step(tmp_path, demo_model):
    data = write_jsonl(tmp_path / "train.jsonl", [{"images": ["x.png"], "messages": CHAT}] * 8)
    failed = Trainer(tiny_config(demo_model, data, tmp_path / "run", valid_fraction=0.0)).run()
    assert isinstance(failed, Failed) and failed.exit_code == 2
    assert any(f"{data}:1: the row carries images" in p for p in failed.problems)
    assert not (tmp_path / "run" / "adapters.safetensors").exists()


def picture_rows(tmp_path, rows: list) -> Path:
    pytest.importorskip("PIL")  # the `vision` extra's
    square_png(tmp_path / "img" / "red.png", "red")
    (tmp_path / "img" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return write_jsonl(tmp_path / "train.jsonl", rows)


def test_picture_rows_in_every_spelling_mlx_vlm_reads(tmp_path):
    rows = [
        {"images": ["img/red.png"], "messages": CHAT},
        {"image": "img/red.png", "messages": CHAT},
        {"images": ["img/red.png"], "messages": PARTS},
        {"image": "img/red.png", "question": "What colour?", "answer": "red"},
        {"images": [str(tmp_path / "img" / "red.png")], "messages": CHAT},  # an absolute path
    ]
    intake = read_dataset(picture_rows(tmp_path, rows), IntakeOptions(valid_fraction=0.0, vision=True))
    assert intake.problems.count == 0, intake.problems.items
    assert intake.format == "vision" and len(intake.splits["train"].rows) == 5
    turns = VISION.as_messages(rows[0])
    assert turns[0]["content"] == [{"type": "image"}, {"type": "text", "text": "What colour?"}]  # before the text
    assert VISION.as_messages(rows[3])[1] == {"role": "assistant", "content": "red"}
    assert VISION.preview(rows[0])["images"] == "img/red.png"


def test_picture_problems_are_named_by_file_and_line(tmp_path):
    rows = [
        {"images": ["img/red.png"], "messages": CHAT},
        {"images": ["img/missing.png"], "messages": CHAT},
        {"images": ["img/broken.png"], "messages": CHAT},
        {"images": ["img/red.png", "img/red.png"], "messages": PARTS},  # two pictures, one image part
        {"images": ["img/red.png"], "video": "clip.mp4", "messages": CHAT},
        {"audio": "a.wav", "messages": CHAT},
        {"images": ["img/red.png"], "prompt": "p", "completion": "c"},
        {"images": [3], "messages": CHAT},
    ]
    path = picture_rows(tmp_path, rows)
    intake = read_dataset(path, IntakeOptions(valid_fraction=0.0, vision=True))
    by_line = {p.line: p.message for p in intake.problems.items}
    assert sorted(by_line) == [2, 3, 4, 5, 6, 7, 8]
    assert "img/missing.png not found" in by_line[2]
    assert "cannot be read as a picture" in by_line[3]
    assert "2 image(s)" in by_line[4] and "1 image part" in by_line[4]
    assert "video" in by_line[5] and "only pictures" in by_line[5]
    assert "audio" in by_line[6]
    assert "no 'messages'" in by_line[7]
    assert "list of image paths" in by_line[8]
    assert all(str(p).startswith(f"{path}:") for p in intake.problems.items)
