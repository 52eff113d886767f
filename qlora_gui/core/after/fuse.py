"""Merge an adapter into its base and save a model folder that `mlx_lm.load` reads; export GGUF.

The fused folder is written under a temporary name and renamed into place, so a
failure or a crash never leaves a half model that looks whole, and an existing
folder is never overwritten.

Exactness: de-quantized, each fused weight is W + scale * B^T A^T in the base's
float type, so outputs equal base + adapter up to float rounding. Keeping the
quantization re-quantizes W + delta with the base's bits and group size, which
adds one rounding step per weight (measured in the README).
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mlx.utils import tree_flatten, tree_unflatten

from ..errors import UserError
from ..model.fast_quant import restore_quantized_layers
from .inference import AdapterSource, adapter_layers, base_as_trained, load_with_adapter

# What mlx-lm's GGUF writer handles (mlx_lm/fuse.py); it writes 16-bit float weights only.
GGUF_MODEL_TYPES = ("llama", "mistral", "mixtral")
GGUF_FILE = "ggml-model-f16.gguf"

Progress = Callable[[float, str], None]


@dataclass
class FuseResult:
    path: Path
    quantization: dict | None
    fused_layers: int
    gguf: Path | None
    size_bytes: int


def gguf_support(model_type: str) -> str | None:
    """None when mlx-lm can write GGUF for this architecture, else the reason it cannot."""
    if model_type in GGUF_MODEL_TYPES:
        return None
    return (
        f"mlx-lm exports GGUF only for {', '.join(GGUF_MODEL_TYPES)} models, not '{model_type}'; use the fused "
        "MLX folder, or convert it with llama.cpp's convert_hf_to_gguf.py"
    )


def _check_gguf(adapter: AdapterSource, model: str | None, dequantize: bool) -> None:
    _, config, quantization = base_as_trained(adapter, model)
    reason = gguf_support(str(config.get("model_type", "")))
    if reason:
        raise UserError(reason)
    if quantization and not dequantize:
        raise UserError(
            "GGUF export needs 16-bit weights: choose 'de-quantize to 16-bit' (--dequantize) together with GGUF export"
        )


def _folder_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def fuse_adapter(
    adapter: AdapterSource,
    save_path: str | Path,
    *,
    model: str | None = None,
    dequantize: bool = False,
    export_gguf: bool = False,
    progress: Progress | None = None,
) -> FuseResult:
    """Fuse the adapter into its base (quantized as in training) and save a new model folder."""
    from mlx_lm.utils import dequantize_model, save

    say = progress or (lambda _f, _m: None)
    out = Path(save_path).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"{out} already exists and is not empty; give a new folder for the fused model")
    if export_gguf:
        _check_gguf(adapter, model, dequantize)  # before the (slow) load
    say(0.02, "loading the base model and the adapter")
    loaded = load_with_adapter(model, adapter)
    config = dict(loaded.config)
    net = loaded.model
    restore_quantized_layers(net)
    layers = adapter_layers(net)
    fused = []
    for i, (name, layer) in enumerate(layers, 1):
        fused.append((name, layer.fuse(dequantize=dequantize)))
        if i % 8 == 0 or i == len(layers):
            say(0.05 + 0.45 * i / len(layers), f"fused {i}/{len(layers)} layers")
    if fused:
        net.update_modules(tree_unflatten(fused))
    if dequantize and loaded.quantization:
        say(0.55, "de-quantizing the rest of the model")
        net = dequantize_model(net)
        config.pop("quantization", None)
        config.pop("quantization_config", None)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        say(0.6, "saving the fused model")
        with contextlib.redirect_stdout(io.StringIO()):  # mlx-lm prints its own progress lines
            save(staging, loaded.path, net, loaded.tokenizer, config, donate_model=False)
        gguf = None
        if export_gguf:
            from mlx_lm.gguf import convert_to_gguf

            say(0.85, "writing GGUF")
            with contextlib.redirect_stdout(io.StringIO()):
                convert_to_gguf(staging, dict(tree_flatten(net.parameters())), config, str(staging / GGUF_FILE))
            gguf = out / GGUF_FILE
        if out.exists():
            out.rmdir()  # empty, checked above
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    say(1.0, f"saved {out}")
    quant = None if dequantize else loaded.quantization
    return FuseResult(out, quant, len(fused), gguf, _folder_size(out))
