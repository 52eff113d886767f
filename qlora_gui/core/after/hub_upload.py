"""Publish an export to the Hugging Face Hub: private by default, with a model card written from the run.

The token is the one `hf auth login` (or HF_TOKEN) left; the card says what a reader needs to
trust the model: the base, the data, the settings, final and best validation loss, the
evaluation, the last sample answers and the tool that made it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..inference.adapters import AdapterSource
from ..runs import checkpoints as ckpt
from ..runs.history import read_sample_answers
from ..runs.run_summary import summarize_run
from ..version import VERSION
from .evaluation import read_evaluations

CARD = "README.md"
SETTINGS = ("fine_tune_type", "num_layers", "lora_parameters", "learning_rate", "iters", "batch_size", "max_seq_length")
Progress = Callable[[float, str], None]


def _loss(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) else "—"


def model_card(adapter: AdapterSource, fmt: str, files: list[str]) -> str:
    summary = summarize_run(adapter.run_dir)
    config = summary.config if summary else adapter.config
    base = str(config.get("model") or adapter.config.get("model") or "unknown")
    tags = {"gguf": "gguf", "adapter-gguf": "gguf", "peft": "peft", "mlx": "mlx"}.get(fmt, fmt)
    lines = ["---", f"base_model: {Path(base).name if os.path.isabs(base) else base}"]
    lines += ["library_name: " + ("peft" if fmt == "peft" else "mlx" if fmt == "mlx" else "gguf")]
    lines += ["tags:", f"  - {tags}", "  - lora", "  - qlora-studio", "---", ""]
    lines += [f"# {adapter.run_dir.name}", ""]
    lines += [f"Fine-tuned from **{base}** with LoRA by QLoRA Studio {VERSION} (MLX), exported as {fmt}.", ""]
    lines += ["## Training", "", f"- Data: `{Path(str(config.get('data', '?'))).name}`"]
    lines += [f"- {key}: `{config[key]}`" for key in SETTINGS if key in config]
    lines.append(f"- Checkpoint: {adapter.label}")
    if summary:
        lines.append(f"- Steps: {summary.last_step} ({summary.status})")
        lines.append(f"- Validation loss: final {_loss(summary.final_val_loss)}, best {_loss(summary.best_val_loss)}")
    best = ckpt.best_checkpoint(adapter.run_dir)
    if best is not None:
        lines.append(f"- Best checkpoint: step {best.step}")
    evaluations = read_evaluations(adapter.run_dir)
    if evaluations:
        lines += ["", "## Evaluation", ""]
        for e in evaluations[-3:]:
            scores = ", ".join(
                f"{side} loss {_loss((e.get(side) or {}).get('loss'))}" for side in ("base", "adapter") if e.get(side)
            )
            lines.append(f"- {e.get('split', '?')} split of `{Path(str(e.get('data', '?'))).name}`: {scores}")
    samples = read_sample_answers(adapter.run_dir)
    if samples:
        last = samples[-1]
        lines += ["", f"## Sample answers (step {last.step})", ""]
        for answer in last.answers[:3]:
            prompt = str(answer.get("prompt", "")).strip().replace("\n", " ")[:200]
            text = str(answer.get("answer", answer.get("text", ""))).strip().replace("\n", " ")[:300]
            lines += [f"- **Prompt:** {prompt}", f"  **Answer:** {text}"]
    lines += ["", "## Files", ""] + [f"- `{f}`" for f in files]
    return "\n".join(lines) + "\n"


def write_model_card(folder: Path, adapter: AdapterSource, fmt: str) -> Path:
    files = sorted(p.name for p in folder.iterdir() if p.name != CARD)
    path = folder / CARD
    ckpt.atomic_write_text(path, model_card(adapter, fmt, files))
    return path


def upload(
    folder: Path,
    repo_id: str,
    *,
    private: bool = True,
    token: str | None = None,
    endpoint: str | None = None,
    progress: Progress | None = None,
) -> str:
    """Create the repository (private unless asked) and upload the folder in one commit; returns its URL."""
    from huggingface_hub import HfApi, get_token
    from huggingface_hub.errors import HfHubHTTPError

    say = progress or (lambda _f, _m: None)
    token = token or get_token()
    if not token:
        raise UserError("no Hugging Face token: log in with `hf auth login` (or set HF_TOKEN), then publish again")
    if "/" not in repo_id:
        raise UserError(f"'{repo_id}' is not a repository name; give it as USER/NAME or ORG/NAME")
    api = HfApi(endpoint=endpoint, token=token)
    try:
        say(0.05, f"creating {repo_id} ({'private' if private else 'public'})")
        url = api.create_repo(repo_id, visibility="private" if private else "public", exist_ok=True)
        say(0.15, f"uploading {sum(1 for _ in folder.iterdir())} files")
        api.upload_folder(repo_id=repo_id, folder_path=folder, commit_message="Upload from QLoRA Studio")
    except HfHubHTTPError as e:
        raise UserError(f"the Hub refused the upload to {repo_id}: {e}") from e
    except OSError as e:
        raise UserError(f"could not reach the Hub to upload {repo_id}: {e}") from e
    say(1.0, f"published {url}")
    return str(url)
