"""Find a model on this machine. Nothing here downloads: a repo id that is not
already in the Hugging Face cache fails at once with a message saying so."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..errors import ModelError

WEIGHT_GLOBS = ("*.safetensors",)
# Any one of these makes a tokenizer transformers can load (fast JSON, SentencePiece, BPE vocab, tiktoken).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "tiktoken.model", "tokenizer_config.json")


def hf_cache_dir() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface"))
    return home / "hub"


def _cached_snapshot(repo_id: str) -> Path | None:
    folder = hf_cache_dir() / ("models--" + repo_id.replace("/", "--"))
    ref = folder / "refs" / "main"
    if ref.is_file():
        snap = folder / "snapshots" / ref.read_text().strip()
        if snap.is_dir():
            return snap
    snaps = sorted((folder / "snapshots").glob("*")) if (folder / "snapshots").is_dir() else []
    return snaps[-1] if snaps else None


def resolve_model_path(name: str | os.PathLike, tokenizer_only: bool = False) -> Path:
    """A local model folder for a path or an already-downloaded Hugging Face repo id, checked for training
    (its weights whole, its architecture known) or, with `tokenizer_only`, for reading its tokenizer."""
    check = check_tokenizer_folder if tokenizer_only else check_model_folder
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelError(f"{path}: a model is a folder (config.json, *.safetensors, tokenizer files), not a file")
        check(path)
        return path
    text = str(name)
    if text.count("/") == 1 and not text.startswith((".", "/", "~")):
        snap = _cached_snapshot(text)
        if snap is not None:
            check(snap)
            return snap
        raise ModelError(
            f"model '{text}' is not on this machine (not a folder, not in the Hugging Face cache at "
            f"{hf_cache_dir()}); download it first with the app's 'Download from Hugging Face…' "
            "or `hf download`, or give a local folder"
        )
    raise ModelError(f"{text}: no such model folder; give a folder with config.json and *.safetensors")


def check_model_folder(path: Path) -> None:
    """The folder's files, then whether mlx-lm has its architecture: each problem named before any loading."""
    config = check_model_files(path)
    from importlib.util import find_spec

    from mlx_lm.utils import MODEL_REMAPPING  # mlx-lm's own names for architectures it shares

    model_type = str(config.get("model_type", ""))
    if isinstance(config.get("vision_config"), dict):  # a vision-language model: mlx-vlm's (vision_model.py)
        return
    module = MODEL_REMAPPING.get(model_type, model_type)
    if not module or find_spec(f"mlx_lm.models.{module}") is None:
        raise ModelError(
            f"{path / 'config.json'}: model_type '{model_type}' is not an architecture mlx-lm "
            "supports here; pick another model, or update mlx-lm if this one is new"
        )


def check_tokenizer_folder(path: Path) -> None:
    """Enough of a model folder to read its tokenizer (data checks need nothing else)."""
    if not (path / "config.json").is_file():
        raise ModelError(f"{path}: no config.json here; pick the model's top folder (Hugging Face layout)")
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        raise ModelError(
            f"{path}: no tokenizer ({', '.join(TOKENIZER_FILES)}); copy the tokenizer files from the "
            "model's original repository into this folder"
        )


def check_model_files(path: Path) -> dict:
    """A model folder's files, cheaply (no imports, headers only); returns its config."""
    check_tokenizer_folder(path)
    if not any(any(path.glob(g)) for g in WEIGHT_GLOBS):
        raise ModelError(
            f"{path}: no *.safetensors weights; MLX needs safetensors (convert other formats with `mlx_lm.convert`)"
        )
    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, ValueError) as e:
        raise ModelError(f"{path / 'config.json'}: cannot read it ({e}); the model folder looks damaged") from e
    if not isinstance(config, dict):
        raise ModelError(f"{path / 'config.json'}: not a model configuration (a JSON object is expected)")
    for weights in sorted(path.glob("*.safetensors")):
        problem = _safetensors_problem(weights)
        if problem:
            raise ModelError(
                f"{weights}: the weights file {problem}, as an interrupted download or copy leaves it; "
                "download or copy the model again"
            )
    return config


def _safetensors_problem(file: Path) -> str | None:
    """Whether a safetensors file is whole, from its header alone (its data offsets against its size)."""
    size = file.stat().st_size
    with open(file, "rb") as f:
        head = f.read(8)
        n = int.from_bytes(head, "little") if len(head) == 8 else -1
        if n < 0 or n > size - 8:
            return f"is cut short ({size:,} bytes, not even its header)"
        try:
            header = json.loads(f.read(n))
        except (ValueError, UnicodeDecodeError):
            return "has a damaged header"
    ends = [
        v["data_offsets"][1]
        for k, v in header.items()
        if k != "__metadata__" and isinstance(v, dict) and "data_offsets" in v
    ]
    needed = 8 + n + max(ends, default=0)
    return f"is cut short ({size:,} of {needed:,} bytes)" if size < needed else None


def load_tokenizer(path: str | Path, trust_remote_code: bool = False) -> Any:  # mlx-lm's TokenizerWrapper
    """The tokenizer alone (cheap), so data can be checked before any weights load; trust_remote_code as
    mlx_lm.load passes it to the tokenizer."""
    from mlx_lm.utils import load_config
    from mlx_lm.utils import load_tokenizer as _load

    path = Path(path)  # mlx-lm joins paths with "/"
    try:
        # As mlx_lm.load does: the model's (and generation config's) end tokens stop generation and end turns.
        eos = load_config(path).get("eos_token_id")
        extra = {"trust_remote_code": True} if trust_remote_code else None
        return _load(path, tokenizer_config_extra=extra, eos_token_ids=[eos] if isinstance(eos, int) else eos)
    except Exception as e:  # transformers raises many kinds for broken tokenizer files
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise ModelError(
            f"{path}: cannot load the tokenizer ({type(e).__name__}: {first_line}); "
            "the folder needs tokenizer.json or tokenizer.model with tokenizer_config.json"
        ) from e
