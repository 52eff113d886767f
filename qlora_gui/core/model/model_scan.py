"""Find models on this machine: the Hugging Face cache, LM Studio's folders, and folders the user added.

Reads only config.json and safetensors headers, never weights, so a scan is quick.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .model_files import hf_cache_dir

LM_STUDIO_DIRS = (Path.home() / ".lmstudio" / "models", Path.home() / ".cache" / "lm-studio" / "models")


@dataclass
class ModelInfo:
    name: str
    path: Path
    source: str  # "Hugging Face cache", "LM Studio", "added folder"
    architecture: str
    size_bytes: int
    parameters: int
    quantization: str  # "4-bit (group 64)", "float16", ...
    bits: int | None = None  # bits per weight of a quantized model as stored

    @property
    def label(self) -> str:
        return (
            f"{self.name}  ·  {self.architecture}  ·  {format_count(self.parameters)} params  ·  "
            f"{self.quantization}  ·  {format_bytes(self.size_bytes)}"
        )


def format_count(n: int) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)


def format_bytes(n: int) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB"


def _safetensors_header(path: Path) -> dict:
    with path.open("rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        if length > 100_000_000:
            return {}
        return json.loads(f.read(length))


def describe_model(path: Path, source: str, name: str | None = None) -> ModelInfo | None:
    """What the model list shows for a folder; None when it is not a model folder."""
    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, ValueError):
        return None
    files = sorted(path.glob("*.safetensors"))
    if not files:
        return None
    quant = config.get("quantization") or config.get("quantization_config") or {}
    bits = quant.get("bits") if isinstance(quant, dict) else None
    params = 0
    size = 0
    for f in files:
        size += f.stat().st_size
        try:
            header = _safetensors_header(f)
        except (OSError, ValueError, struct.error):
            continue
        for key, meta in header.items():
            if key == "__metadata__" or key.endswith((".scales", ".biases")):
                continue
            count = 1
            for d in meta.get("shape", []):
                count *= d
            # Packed quantized weights hold 32/bits values per uint32.
            params += count * (32 // bits) if bits and meta.get("dtype") == "U32" else count
    if bits:
        quant_text = f"{bits}-bit (group {quant.get('group_size', 64)})"
    else:
        quant_text = str(config.get("torch_dtype") or config.get("dtype") or "full precision")
    arch = str(config.get("model_type") or (config.get("architectures") or ["unknown"])[0])
    return ModelInfo(name or path.name, path, source, arch, size, params, quant_text, int(bits) if bits else None)


def _hf_cache_models() -> list[ModelInfo]:
    out: list[ModelInfo] = []
    root = hf_cache_dir()
    if not root.is_dir():
        return out
    for repo in sorted(root.glob("models--*")):
        snaps = sorted((repo / "snapshots").glob("*"), key=lambda p: p.stat().st_mtime)
        if snaps:
            info = describe_model(snaps[-1], "Hugging Face cache", repo.name[len("models--") :].replace("--", "/"))
            if info:
                out.append(info)
    return out


def _folder_models(root: Path, source: str, depth: int) -> list[ModelInfo]:
    """A model folder itself, or models up to `depth` folders below it."""
    info = describe_model(root, source)
    if info or depth == 0 or not root.is_dir():
        return [info] if info else []
    out = []
    for child in sorted(p for p in root.iterdir() if p.is_dir()):
        out += _folder_models(child, source, depth - 1)
    return out


def scan_models(extra_folders: Iterable[str | Path] = ()) -> list[ModelInfo]:
    found = _hf_cache_models()
    for root in LM_STUDIO_DIRS:
        if root.is_dir():
            found += _folder_models(root, "LM Studio", 2)
    for folder in extra_folders:
        found += _folder_models(Path(folder), "added folder", 1)
    seen, unique = set(), []
    for m in found:
        key = m.path.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(m)
    return unique
