"""Find a model on this machine. Nothing here downloads: a repo id that is not
already in the Hugging Face cache fails at once with a message saying so."""

from __future__ import annotations

import json
import os
from pathlib import Path

from .errors import ModelError

WEIGHT_GLOBS = ("*.safetensors",)


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


def resolve_model_path(name: str | os.PathLike) -> Path:
    """A local model folder for a path or an already-downloaded Hugging Face repo id."""
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelError(f"{path}: a model is a folder (config.json, *.safetensors, tokenizer files), not a file")
        check_model_folder(path)
        return path
    text = str(name)
    if text.count("/") == 1 and not text.startswith((".", "/", "~")):
        snap = _cached_snapshot(text)
        if snap is not None:
            check_model_folder(snap)
            return snap
        raise ModelError(f"model '{text}' is not on this machine (not a folder, not in the Hugging Face cache at "
                         f"{hf_cache_dir()}); download it first with the app's 'Download from Hugging Face…' "
                         "or `hf download`, or give a local folder")
    raise ModelError(f"{text}: no such model folder; give a folder with config.json and *.safetensors")


def check_model_folder(path: Path) -> None:
    if not (path / "config.json").is_file():
        raise ModelError(f"{path}: no config.json here; pick the model's top folder (Hugging Face layout)")
    if not any(path.glob(g) for g in WEIGHT_GLOBS):
        raise ModelError(f"{path}: no *.safetensors weights; MLX needs safetensors "
                         "(convert other formats with `mlx_lm.convert`)")
    try:
        json.loads((path / "config.json").read_text())
    except (OSError, ValueError) as e:
        raise ModelError(f"{path / 'config.json'}: cannot read it ({e}); the model folder looks damaged") from e


def load_tokenizer(path: str | Path):
    """The tokenizer alone (cheap), so data can be checked before any weights load."""
    from mlx_lm.utils import load_config, load_tokenizer as _load

    path = Path(path)  # mlx-lm joins paths with "/"
    try:
        # As mlx_lm.load does: the model's (and generation config's) end tokens stop generation and end turns.
        eos = load_config(path).get("eos_token_id")
        return _load(path, eos_token_ids=[eos] if isinstance(eos, int) else eos)
    except Exception as e:  # transformers raises many kinds for broken tokenizer files
        raise ModelError(f"{path}: cannot load the tokenizer ({type(e).__name__}: {e}); "
                         "the folder needs tokenizer.json or tokenizer.model with tokenizer_config.json") from e
