"""The adapter alone, for tools that apply it to the original base: a GGUF LoRA and a PEFT folder.

MLX keeps a LoRA layer as `a` (in, r) and `b` (r, out) and computes y += scale * x a b. llama.cpp
and PEFT keep A (r, in) and B (out, r) and scale by alpha / r, so A = a.T, B = b.T and
alpha = scale * r give the same y. llama.cpp's file also needs the base's own tensor changes:
Llama's q/k rows are permuted, which for a LoRA permutes the rows of B. DoRA adapters are
refused: neither format has their magnitude vector.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserError
from ..inference.adapters import AdapterSource, base_as_trained
from .gguf_arch import gguf_architecture, gguf_tensor_name, llama_permute, tensor_mapper, text_hparams
from .staging import staged

PEFT_WEIGHTS = "adapter_model.safetensors"
PEFT_CONFIG = "adapter_config.json"


def lora_pairs(adapter: AdapterSource) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], int, float]:
    """{module name: (A (r, in), B (out, r))}, the rank and alpha, from the adapter's own files."""
    import mlx.core as mx

    kind = str(adapter.config.get("fine_tune_type", "lora"))
    if kind == "dora":
        raise UserError(
            f"{adapter.path}: a DoRA adapter cannot be exported alone: GGUF and PEFT LoRA files have no "
            "place for its magnitude vector; export the fused model (MLX or GGUF) instead"
        )
    if kind != "lora":
        raise UserError(f"{adapter.path}: a '{kind}' fine-tune has no low-rank adapter; export the fused model")
    weights: dict[str, Any] = mx.load(str(adapter.path / "adapters.safetensors"))  # type: ignore[assignment]
    if any(k.endswith(".m") for k in weights):
        raise UserError(f"{adapter.path}: this adapter has DoRA magnitudes; export the fused model instead")
    params = adapter.config.get("lora_parameters") or {}
    rank, scale = int(params.get("rank", 8)), float(params.get("scale", 20.0))
    pairs = {}
    for key in weights:
        if key.endswith(".lora_a"):
            module = key[: -len(".lora_a")]
            a = np.array(weights[key].astype(mx.float32))
            b = np.array(weights[module + ".lora_b"].astype(mx.float32))
            pairs[module] = (np.ascontiguousarray(a.T), np.ascontiguousarray(b.T))
            rank = a.shape[1]
    if not pairs:
        raise UserError(f"{adapter.path}: no LoRA weights (lora_a/lora_b) in adapters.safetensors")
    return pairs, rank, scale * rank


def write_gguf_adapter(adapter: AdapterSource, out_file: Path, model: str | None = None) -> Path:
    """llama.cpp's LoRA adapter file (`--lora`, Ollama's ADAPTER): general.type = adapter, F32 A and B."""
    import gguf

    _, config, _ = base_as_trained(adapter, model)
    arch = gguf_architecture(str(config.get("model_type", "")))
    hp = text_hparams(config)
    pairs, _rank, alpha = lora_pairs(adapter)
    mapper = tensor_mapper(arch, int(hp["num_hidden_layers"]))
    with staged(out_file, folder=False) as staging:
        writer = gguf.GGUFWriter(str(staging), arch)
        writer.add_type(gguf.GGUFType.ADAPTER)
        writer.add_name(f"{adapter.run_dir.name} LoRA")
        writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
        writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(alpha))
        for module, (a, b) in sorted(pairs.items()):
            target = gguf_tensor_name(mapper, module + ".weight")
            if arch == "llama" and module.endswith(("q_proj", "k_proj")):
                n_head = int(hp["num_attention_heads"])
                n_kv = n_head if module.endswith("q_proj") else int(hp.get("num_key_value_heads") or n_head)
                b = llama_permute(b, n_head, n_kv)
            writer.add_tensor(target + ".lora_a", a.astype(np.float32))
            writer.add_tensor(target + ".lora_b", b.astype(np.float32))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
    return out_file


def write_peft_adapter(adapter: AdapterSource, out_dir: Path, model: str | None = None) -> Path:
    """A PEFT LoRA folder: adapter_model.safetensors (base_model.model.<name>.lora_A/B.weight) and its config."""
    import mlx.core as mx

    base_path, _config, _ = base_as_trained(adapter, model)
    pairs, rank, alpha = lora_pairs(adapter)
    tensors: dict[str, Any] = {}
    layers: set[int] = set()
    targets: set[str] = set()
    for module, (a, b) in pairs.items():
        tensors[f"base_model.model.{module}.lora_A.weight"] = mx.array(a)
        tensors[f"base_model.model.{module}.lora_B.weight"] = mx.array(b)
        targets.add(module.rsplit(".", 1)[-1])
        parts = module.split(".")
        if "layers" in parts and parts[parts.index("layers") + 1].isdigit():
            layers.add(int(parts[parts.index("layers") + 1]))
    peft_config = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": str(adapter.config.get("model") or base_path),
        "r": rank,
        "lora_alpha": alpha,
        "lora_dropout": float((adapter.config.get("lora_parameters") or {}).get("dropout", 0.0)),
        "target_modules": sorted(targets),
        "layers_to_transform": sorted(layers) or None,
        "bias": "none",
        "fan_in_fan_out": False,
        "inference_mode": True,
    }
    with staged(out_dir, folder=True) as staging:
        mx.save_safetensors(str(staging / PEFT_WEIGHTS), tensors, metadata={"format": "pt"})
        (staging / PEFT_CONFIG).write_text(json.dumps(peft_config, indent=2) + "\n")
    return out_dir
