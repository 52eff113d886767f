"""A checked and encoded dataset kept on disk, so opening the same data again costs a hash of the file.

An entry is keyed by the data files' content (sha256), the tokenizer (its full definition and chat template),
every setting that changes the check or the tokens (max length, completions only, the split's share and seed,
the batch size) and the entry format (CACHE_FORMAT, raised whenever the encoding changes). It holds the report,
the checked rows' byte spans and lines, and each split's token ids and masks as flat files that training
reads a batch's rows from. Entries are written in a staging folder and renamed into place (never
half-written); an entry that does not read back whole is deleted and made again. The folder (the platform's
cache folder, or $QLORA_GUI_TOKEN_CACHE; "off" turns the cache off) keeps at most $QLORA_GUI_TOKEN_CACHE_GB
(default 20) GB: the least recently used entries go first.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from .encode import EncodedSplit, _backend, _hf
from .intake import DATA_SUFFIXES, SPLITS
from .ragged import Ragged

CACHE_FORMAT = 2  # raise when an entry's layout or the encoding changes (2: GRPO prompt rows are read)
META = "check.pickle"
DEFAULT_LIMIT_GB = 20.0
STALE_STAGING_S = 24 * 3600  # a staging folder this old was left by a process that died


def cache_root() -> Path | None:
    """The cache folder; None when $QLORA_GUI_TOKEN_CACHE is "off"."""
    env = os.environ.get("QLORA_GUI_TOKEN_CACHE")
    if env == "off":
        return None
    if env:
        return Path(env)
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("qlora-gui", appauthor=False)) / "tokens"


def _limit_bytes() -> int:
    try:
        return int(float(os.environ.get("QLORA_GUI_TOKEN_CACHE_GB", DEFAULT_LIMIT_GB)) * 1e9)
    except ValueError:
        return int(DEFAULT_LIMIT_GB * 1e9)


def _data_files(path: Path) -> list[Path]:
    if path.is_dir():
        return [path / f"{s}{x}" for s in SPLITS for x in DATA_SUFFIXES if (path / f"{s}{x}").is_file()]
    return [path] if path.is_file() else []


def tokenizer_hash(tokenizer: Any) -> str | None:
    """What decides the tokens: the Rust tokenizer's whole definition and the chat template; None for a slow
    tokenizer (nothing cheap and complete to hash: such data is encoded every time)."""
    if tokenizer is None:
        return "none"
    backend = _backend(tokenizer)
    if backend is None:
        return None
    hf = _hf(tokenizer)
    parts = [type(hf).__name__, backend.to_str(), json.dumps(getattr(hf, "chat_template", None), sort_keys=True)]
    parts += [repr(getattr(tokenizer, "eos_token_id", None)), repr(getattr(hf, "bos_token_id", None))]
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()


def cache_key(path: str | Path, tokenizer: Any, settings: dict[str, Any]) -> str | None:
    """The entry for this data, tokenizer and settings; None when it cannot be cached."""
    path = Path(path).expanduser()
    files = _data_files(path)
    tok = tokenizer_hash(tokenizer)
    if not files or tok is None or cache_root() is None:
        return None
    digest = hashlib.sha256(f"{CACHE_FORMAT}\x00{path.resolve()}\x00{tok}".encode())
    digest.update(json.dumps(settings, sort_keys=True).encode())
    for file in files:
        digest.update(f"\x00{file.name}\x00".encode())
        try:
            with open(file, "rb") as f:
                while block := f.read(1 << 24):
                    digest.update(block)
        except OSError:
            return None
    return digest.hexdigest()[:40]


def staging_folder(key: str) -> Path | None:
    """A fresh folder for an entry being made, or None when the cache folder cannot be written."""
    try:
        root = cache_root()
        assert root is not None  # a key was made
        root.mkdir(parents=True, exist_ok=True)
        folder = root / f"{key}.staging-{os.getpid()}-{time.monotonic_ns()}"
        folder.mkdir()
        return folder
    except OSError:
        return None


def _split_meta(enc: EncodedSplit) -> dict[str, Any]:
    fields = dict(vars(enc))
    fields["tokens"], fields["trained"] = None, None
    fields["starts"] = enc.tokens.starts
    return fields


def store(key: str, staging: Path, check: Any) -> None:
    """Make `staging` (where the splits' arrays were written) the entry for `key`, then keep the cache in bounds."""
    encoded = {name: _split_meta(enc) for name, enc in (check.encoded or {}).items()}
    meta = {"format": CACHE_FORMAT, "key": key, "report": check.report, "raw": check.raw, "encoded": encoded}
    try:
        with open(staging / META, "wb") as f:
            pickle.dump(meta, f, protocol=pickle.HIGHEST_PROTOCOL)
        final = staging.parent / key
        if final.exists():  # another process made it meanwhile (a damaged one was deleted when read)
            shutil.rmtree(staging, ignore_errors=True)  # arrays still mapped stay readable until unmapped
            return
        os.rename(staging, final)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        return
    evict(staging.parent, keep=key)


def load(key: str) -> dict[str, Any] | None:
    """The entry's report, rows and splits (their values left in their files); None (and the entry deleted)
    when it is missing or does not read back whole."""
    root = cache_root()
    if root is None:
        return None
    folder = root / key
    if not (folder / META).is_file():
        return None
    try:
        with open(folder / META, "rb") as f:
            meta = pickle.load(f)
        if meta.get("format") != CACHE_FORMAT or meta.get("key") != key:
            raise ValueError("another entry")
        encoded = {}
        for name, fields in meta["encoded"].items():
            starts = fields.pop("starts")
            fields["tokens"] = Ragged.from_file(folder / f"{name}.ids", np.int32, starts)
            fields["trained"] = Ragged.from_file(folder / f"{name}.mask", np.bool_, starts)
            encoded[name] = EncodedSplit(**fields)
        meta["encoded"] = encoded
        os.utime(folder / META)  # recently used: evicted last
        return meta
    except Exception:  # a damaged entry of any kind is made again, never trusted  # noqa: BLE001
        shutil.rmtree(folder, ignore_errors=True)
        return None


def evict(root: Path, keep: str) -> None:
    """Delete the least recently used entries until the cache fits its limit (`keep` stays), and staging
    folders left by processes that died."""
    entries = []
    now = time.time()
    for folder in root.iterdir():
        try:
            if ".staging-" in folder.name:
                if now - folder.stat().st_mtime > STALE_STAGING_S:
                    shutil.rmtree(folder, ignore_errors=True)
                continue
            used = (folder / META).stat().st_mtime if (folder / META).exists() else 0.0
            size = sum(f.stat().st_size for f in folder.iterdir())
            entries.append((used, size, folder))
        except OSError:
            continue
    total = sum(size for _, size, _ in entries)
    for _, size, folder in sorted(entries, key=lambda e: e[0]):
        if total <= _limit_bytes():
            break
        if folder.name != keep:
            shutil.rmtree(folder, ignore_errors=True)
            total -= size
