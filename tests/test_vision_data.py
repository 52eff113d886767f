"""Rows that carry images: refused with the reason when the model reads text alone, never trained as text."""

from __future__ import annotations

from conftest import tiny_config, write_jsonl

from qlora_gui.core.data.dataset import check_data
from qlora_gui.core.data.media import media_parts
from qlora_gui.core.train.events import Failed
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
