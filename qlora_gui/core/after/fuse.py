"""Merge an adapter into its base and save a model folder that `mlx_lm.load` reads (and GGUF beside it).

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
import dataclasses
import io
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import mlx.nn as nn
from mlx.utils import tree_flatten, tree_unflatten

from ..errors import UserError
from ..inference.adapters import AdapterSource, adapter_layers, base_as_trained, load_with_adapter
from ..model.fast_quant import restore_quantized_layers
from ..model.loader import BaseWeights, LoadedModel
from .gguf_arch import ARCHITECTURES, unsupported_reason
from .staging import refuse_existing, staged

if TYPE_CHECKING:
    from .gguf_export import GgufType

Progress = Callable[[float, str], None]


@dataclass
class FuseResult:
    path: Path
    quantization: dict | None
    fused_layers: int
    gguf: Path | None
    size_bytes: int


@dataclass
class FusedModel:
    """A base with its adapter merged in, in memory."""

    loaded: LoadedModel
    net: nn.Module
    config: dict
    fused_layers: int

    def weights(self) -> dict:
        return dict(tree_flatten(self.net.parameters()))

    def model_args(self) -> dict:
        args = getattr(self.net, "args", None) or getattr(getattr(self.net, "language_model", None), "args", None)
        return dataclasses.asdict(args) if dataclasses.is_dataclass(args) and not isinstance(args, type) else {}

    def write_gguf(self, out_file: Path, kind: GgufType, *, name: str, progress: Progress) -> None:
        """The fused weights as one GGUF file of the given tensor type."""
        from .gguf_export import write_gguf

        write_gguf(
            self.loaded.path,
            self.config,
            self.weights(),
            out_file,
            kind,
            model_args=self.model_args(),
            name=name,
            progress=progress,
        )


def gguf_support(model_type: str) -> str | None:
    """None when we can write GGUF for this architecture, else the reason we cannot."""
    return None if model_type in ARCHITECTURES else unsupported_reason(model_type)


def fuse_in_memory(
    adapter: AdapterSource,
    *,
    model: str | None = None,
    dequantize: bool = False,
    bits: int | None = None,
    progress: Progress | None = None,
) -> FusedModel:
    """Load the base as trained, merge the adapter; de-quantize, or quantize to `bits`, when asked."""
    from mlx_lm.utils import dequantize_model, quantize_model

    say = progress or (lambda _f, _m: None)
    say(0.02, "loading the base model and the adapter")
    loaded = load_with_adapter(model, adapter)
    config = dict(loaded.config)
    net = loaded.model
    restore_quantized_layers(net)
    layers = adapter_layers(net)
    fused = []
    for i, (name, layer) in enumerate(layers, 1):
        fused.append((name, layer.fuse(dequantize=dequantize or bits is not None)))
        if i % 8 == 0 or i == len(layers):
            say(0.05 + 0.45 * i / len(layers), f"fused {i}/{len(layers)} layers")
    if fused:
        net.update_modules(tree_unflatten(fused))
    if (dequantize or bits is not None) and loaded.quantization:
        say(0.55, "de-quantizing the rest of the model")
        net = dequantize_model(net)
        config.pop("quantization", None)
        config.pop("quantization_config", None)
    if bits is not None:
        say(0.58, f"quantizing to {bits} bits")
        net, config = quantize_model(net, config, 64, bits)
    if adapter.config.get("fine_tune_type") == "full":  # its weights replaced the base's whole blocks on load
        trained = getattr(loaded.model, BaseWeights.ATTRIBUTE).weights
        blocks = {m.group(0) for k in trained if (m := re.search(r"layers\.\d+\.", k))}
        return FusedModel(loaded, net, config, len(blocks))
    return FusedModel(loaded, net, config, len(fused))


def _folder_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def fuse_adapter(
    adapter: AdapterSource,
    save_path: str | Path,
    *,
    model: str | None = None,
    dequantize: bool = False,
    bits: int | None = None,
    export_gguf: bool = False,
    progress: Progress | None = None,
) -> FuseResult:
    """Fuse the adapter into its base (quantized as in training, or as asked) and save a new model folder."""
    from mlx_lm.utils import save

    from .gguf_export import GGUF_TYPES, check_gguf_export, gguf_file_name

    say = progress or (lambda _f, _m: None)
    out = Path(save_path).expanduser()
    refuse_existing(out)
    if export_gguf:  # before the (slow) load
        base_path, base_config, quantization = base_as_trained(adapter, model)
        check_gguf_export(base_path, base_config)
        if (quantization and not dequantize) or bits is not None:
            raise UserError(
                "GGUF export needs 16-bit weights: choose 'de-quantize to 16-bit' (--dequantize) "
                "together with GGUF export"
            )
    fused = fuse_in_memory(adapter, model=model, dequantize=dequantize, bits=bits, progress=say)
    with staged(out, folder=True) as staging:
        say(0.6, "saving the fused model")
        with contextlib.redirect_stdout(io.StringIO()):  # mlx-lm prints its own progress lines
            save(staging, fused.loaded.path, fused.net, fused.loaded.tokenizer, fused.config, donate_model=False)
        gguf = None
        if export_gguf:
            kind = GGUF_TYPES["f16"]
            name = gguf_file_name(out.name, kind)
            fused.write_gguf(staging / name, kind, name=out.name, progress=lambda f, m: say(0.85 + 0.14 * f, m))
            gguf = out / name
    say(1.0, f"saved {out}")
    quant = (
        fused.config.get("quantization") if bits is not None else (None if dequantize else fused.loaded.quantization)
    )
    return FuseResult(out, quant, fused.fused_layers, gguf, _folder_size(out))
