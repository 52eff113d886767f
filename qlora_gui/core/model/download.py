"""Download a model from the Hugging Face Hub, failing at once and clearly when offline."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from pathlib import Path

from ..errors import ModelError

ALLOW_PATTERNS = ["*.json", "model*.safetensors", "*.py", "tokenizer.model", "*.tiktoken", "*.txt", "*.jinja"]
HUB_HOST = "huggingface.co"


def _offline_reason() -> str | None:
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on"):
            return f"offline mode is on ({var} is set)"
    try:
        socket.create_connection((HUB_HOST, 443), timeout=3).close()
    except OSError as e:
        return f"{HUB_HOST} cannot be reached ({e.strerror or e})"
    return None


def download_model(repo_id: str, progress: Callable[[int, int], None] | None = None) -> Path:
    """Fetch a repo into the Hugging Face cache; `progress(done_bytes, total_bytes)` as it goes."""
    repo_id = repo_id.strip()
    if repo_id.count("/") != 1 or " " in repo_id:
        raise ModelError(
            f"'{repo_id}' is not a Hugging Face repo id; use the form owner/name, "
            "e.g. mlx-community/Qwen2.5-0.5B-Instruct-4bit"
        )
    reason = _offline_reason()
    if reason:
        raise ModelError(
            f"cannot download {repo_id}: {reason}. Connect to the internet, or pick a model folder "
            "on this machine or the demo model"
        )
    from huggingface_hub import snapshot_download
    from tqdm.auto import tqdm

    class Progress(tqdm):  # huggingface_hub reports bytes through a tqdm class
        def update(self, n: float | None = 1) -> bool | None:
            out = super().update(n)
            if progress and self.total:
                progress(int(self.n), int(self.total))
            return out

    try:
        return Path(snapshot_download(repo_id, allow_patterns=ALLOW_PATTERNS, tqdm_class=Progress))
    except Exception as e:  # the hub raises many kinds: not found, gated, network
        raise ModelError(f"download of {repo_id} failed: {e}") from e
