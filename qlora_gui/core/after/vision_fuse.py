"""Merge a vision run's adapter into its base and save a model folder that `mlx_vlm.load` and
`mlx_vlm.generate` read: the whole model (vision tower, projector, language model with the adapter merged),
its config, and the processor's files (tokenizer, chat template, image processor) as the base has them.

Written under a staging name and renamed into place, like every export (staging.py).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten, tree_unflatten

from ..inference.adapters import AdapterSource, base_model_of
from ..model.vision_model import add_vision_adapters_from, load_processor, load_vision_base
from .fuse import FuseResult, Progress
from .staging import refuse_existing, staged

WEIGHTS_GLOBS = ("*.safetensors", "*.safetensors.index.json")


def fuse_vision_adapter(
    adapter: AdapterSource, save_path: str | Path, *, model: str | None = None, progress: Progress | None = None
) -> FuseResult:
    """The adapter merged into the language model's weights (in the base's own type: float, or quantized as the
    base is), saved as a new mlx-vlm model folder."""
    say = progress or (lambda _f, _m: None)
    out = Path(save_path).expanduser()
    refuse_existing(out)
    base = base_model_of(adapter, model)
    say(0.1, f"loading {base.name}")
    loaded = load_vision_base(base, load_processor(base))
    net = loaded.model
    # A base quantized on load for training is merged in its original float weights (as mlx-lm's
    # fuse --dequantize does): the fused folder is the base's own type.
    add_vision_adapters_from(net, adapter.path, quantize=False)
    say(0.4, "merging the adapter")
    fused = [(name, m.fuse()) for name, m in net.named_modules() if is_lora(m)]
    net.update_modules(tree_unflatten(fused))
    weights = dict(tree_flatten(net.parameters()))
    mx.eval(weights)
    with staged(out, folder=True) as staging:
        say(0.6, "saving the fused model")
        for file in base.iterdir():
            if file.is_file() and not any(file.match(g) for g in WEIGHTS_GLOBS):
                shutil.copy2(file, staging / file.name)
        mx.save_safetensors(str(staging / "model.safetensors"), weights, metadata={"format": "mlx"})
    quantization = loaded.config.get("quantization")
    size = sum(f.stat().st_size for f in out.iterdir() if f.is_file())
    say(1.0, f"saved to {out}")
    return FuseResult(out, quantization, len(fused), None, size)


def is_lora(module: nn.Module) -> bool:
    return hasattr(module, "lora_a") and hasattr(module, "fuse")
