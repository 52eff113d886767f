"""mlx-lm's `hf_dataset`: datasets from the local Hugging Face cache, written once as a run's train/valid/test files.

mlx-lm calls `datasets.load_dataset(path, split=..., **config)` for each entry and reads the rows by its
*_feature names. This does the same with the library held offline (the app never downloads), renames the
features to the field names our formats read, and writes the rows under the run folder: the run trains on
those files, and a resume reads the very same rows again.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from ..errors import ConfigError, UserError
from ..mlx_keys import FEATURES, entries

EXTRA = "hf"  # pip install 'qlora-gui[hf]'
SPLIT_DEFAULTS = {"train_split": "train[:80%]", "valid_split": "train[-10%:]"}  # mlx-lm's


def _load_split(datasets: Any, entry: dict[str, Any], split: str) -> list[dict[str, Any]]:
    path = entry["path"]
    try:
        rows = datasets.load_dataset(path, split=split, **entry.get("config", {}))
    except Exception as e:  # the library raises many kinds for a dataset it cannot find offline
        first = (str(e).strip().splitlines() or [""])[0]
        raise UserError(
            f"hf_dataset '{path}' split '{split}' is not available offline ({type(e).__name__}: {first}). "
            "This app never downloads data: the dataset must already be in the local Hugging Face datasets cache "
            "(download it once with the `datasets` library), or give its rows as local .jsonl files as data"
        ) from e
    return [dict(row) for row in rows]


def _renamed(row: dict[str, Any], entry: dict[str, Any], where: str) -> dict[str, Any]:
    """A row in our field names, chosen in mlx-lm's order: prompt and completion, then chat, then text."""
    name = {key: entry.get(key, ours) for key, ours in FEATURES.items()}
    if name["prompt_feature"] in row and name["completion_feature"] in row:
        return {"prompt": row[name["prompt_feature"]], "completion": row[name["completion_feature"]]}
    if name["chat_feature"] in row:
        out = {"messages": row[name["chat_feature"]]}
        return {**out, "tools": row["tools"]} if row.get("tools") else out
    if name["text_feature"] in row:
        return {"text": row[name["text_feature"]]}
    if "chosen" in row and "rejected" in row:  # preference rows keep their own fields
        return row
    raise UserError(
        f"{where}: the rows have the fields {', '.join(map(str, row))}, none of which is "
        f"{name['prompt_feature']}+{name['completion_feature']}, {name['chat_feature']} or {name['text_feature']}; "
        "name the right ones with prompt_feature/completion_feature, chat_feature or text_feature"
    )


def write_hf_dataset(value: Any, folder: Path, with_test: bool) -> Path:
    """The entries' train, valid (and with_test: test) splits as folder/{train,valid,test}.jsonl; a folder that
    already holds them (a resumed run) is used as it is."""
    if (folder / "train.jsonl").is_file():
        return folder
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")  # read before the library is imported
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        import datasets
    except ImportError as e:
        raise ConfigError(
            f"hf_dataset needs the Hugging Face `datasets` package, which is not installed: install the optional "
            f"extra with pip install 'qlora-gui[{EXTRA}]' (it reads the local cache offline), or give the rows as "
            "local .jsonl files as data",
            setting="hf_dataset",
        ) from e
    splits: dict[str, list[dict[str, Any]]] = {"train": [], "valid": [], "test": []}
    for entry in entries(value):
        wanted = {"train": entry.get("train_split", SPLIT_DEFAULTS["train_split"]),
                  "valid": entry.get("valid_split", SPLIT_DEFAULTS["valid_split"])}  # fmt: skip
        if with_test and entry.get("test_split"):
            wanted["test"] = entry["test_split"]
        for split, spec in wanted.items():
            where = f"hf_dataset '{entry['path']}' split '{spec}'"
            splits[split] += [_renamed(row, entry, where) for row in _load_split(datasets, entry, spec)]
    if not splits["train"]:
        raise UserError(f"hf_dataset: the training split of {entries(value)[0]['path']} holds no rows")
    staging = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for split, rows in splits.items():
        if rows:
            text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
            (staging / f"{split}.jsonl").write_text(text, encoding="utf-8")
    os.replace(staging, folder)
    return folder
