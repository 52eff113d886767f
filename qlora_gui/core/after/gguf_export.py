"""Write a fused model as one GGUF file that llama.cpp, LM Studio and Ollama load.

Our own writer (the `gguf` package's GGUFWriter and quantizers), not mlx-lm's, whose files
llama.cpp refuses (uint32 token types, always a SentencePiece tokenizer, no chat template).
Types: F16, BF16, Q8_0 and Q4_0. As in llama.cpp, 1-D tensors (norms, biases) stay F32 and a
row that does not fill whole quantization blocks falls back to F16; Q4_0 keeps the embedding and
output head at Q8_0 (llama.cpp's quantizer gives those more bits too). The type is in the file's
name and in general.file_type.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserError
from .gguf_arch import (
    add_metadata,
    convert_tensor,
    extra_tensors,
    gguf_architecture,
    gguf_tensor_name,
    tensor_mapper,
    text_hparams,
)
from .gguf_vocab import add_tokenizer, tokenizer_kind
from .staging import staged

Progress = Callable[[float, str], None]


@dataclass(frozen=True)
class GgufType:
    key: str  # what --type takes
    label: str  # what the file name and the dialog say
    file_type: int  # gguf.LlamaFileType
    bytes_per_weight: float  # of a 2-D weight, for size estimates
    note: str


GGUF_TYPES: dict[str, GgufType] = {
    t.key: t
    for t in (
        GgufType("f16", "F16", 1, 2.0, "16-bit floats: the fused model exactly, as large as the base in 16-bit"),
        GgufType("bf16", "BF16", 32, 2.0, "bfloat16: the range of float32, for bases trained in bfloat16"),
        GgufType("q8_0", "Q8_0", 7, 34 / 32, "8-bit: about half of F16, nearly indistinguishable"),
        GgufType("q4_0", "Q4_0", 2, 18 / 32, "4-bit: about a quarter of F16, what most people download"),
    )
}


def gguf_type(key: str) -> GgufType:
    found = GGUF_TYPES.get(key.lower())
    if found is None:
        raise UserError(f"unknown GGUF type '{key}'; choose one of {', '.join(GGUF_TYPES)}")
    return found


def gguf_file_name(stem: str, kind: GgufType) -> str:
    return f"{stem}-{kind.label}.gguf"


def check_gguf_export(model_dir: Path, config: Mapping[str, Any]) -> str:
    """The llama.cpp architecture, or a UserError before any (slow) work: unknown architecture or tokenizer."""
    arch = gguf_architecture(str(config.get("model_type", "")))
    tokenizer_kind(model_dir)
    return arch


def estimate_parameters(config: Mapping[str, Any]) -> int:
    """Weights of the language model, from its config alone (for size estimates before anything loads)."""
    hp = text_hparams(dict(config))
    h, layers = int(hp["hidden_size"]), int(hp["num_hidden_layers"])
    heads = int(hp["num_attention_heads"])
    kv = int(hp.get("num_key_value_heads") or heads)
    hd = int(hp.get("head_dim") or h // heads)
    vocab, inter = int(hp.get("vocab_size") or 32000), int(hp["intermediate_size"])
    per_layer = h * hd * (2 * heads + 2 * kv) + 3 * h * inter
    heads_out = 1 if hp.get("tie_word_embeddings", True) else 2
    return layers * per_layer + heads_out * vocab * h


def estimated_bytes(config: Mapping[str, Any], kind: GgufType) -> int:
    """The file's size: the weights at the type's rate (Q4_0's embedding and head at Q8_0) and the vocabulary."""
    hp = text_hparams(dict(config))
    vocab = int(hp.get("vocab_size") or 32000)
    embeddings = vocab * int(hp["hidden_size"]) * (1 if hp.get("tie_word_embeddings", True) else 2)
    q8_rate = GGUF_TYPES["q8_0"].bytes_per_weight
    extra = embeddings * (q8_rate - kind.bytes_per_weight) if kind.key == "q4_0" else 0
    return int(estimate_parameters(config) * kind.bytes_per_weight + extra + vocab * 24)


def _tensor_qtype(name: str, data: np.ndarray, kind: GgufType) -> Any:
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    if data.ndim <= 1 or name.endswith("_norm.weight") or name == "rope_freqs.weight":
        return GGMLQuantizationType.F32
    qtype = {
        "f16": GGMLQuantizationType.F16,
        "bf16": GGMLQuantizationType.BF16,
        "q8_0": GGMLQuantizationType.Q8_0,
        "q4_0": GGMLQuantizationType.Q4_0,
    }[kind.key]
    if kind.key == "q4_0" and name in ("token_embd.weight", "output.weight"):
        qtype = GGMLQuantizationType.Q8_0
    block = GGML_QUANT_SIZES[qtype][0]
    if data.shape[-1] % block:
        return GGMLQuantizationType.F16
    return qtype


def _as_numpy(value: Any) -> np.ndarray:
    if isinstance(value, np.ndarray):
        return value.astype(np.float32, copy=False)
    import mlx.core as mx

    return np.array(value.astype(mx.float32))


def write_gguf(
    model_dir: str | Path,
    config: Mapping[str, Any],
    weights: Mapping[str, Any],
    out_file: str | Path,
    kind: GgufType,
    *,
    model_args: Mapping[str, Any] | None = None,
    name: str | None = None,
    progress: Progress | None = None,
) -> Path:
    """Write `weights` (Hugging Face names, float) with the tokenizer of `model_dir` as one GGUF file."""
    import gguf

    say = progress or (lambda _f, _m: None)
    model_dir, out_file = Path(model_dir), Path(out_file)
    arch = check_gguf_export(model_dir, config)
    hp = text_hparams(dict(config), dict(model_args or {}))
    embed = next((v for k, v in weights.items() if k.endswith("embed_tokens.weight")), None)
    if embed is None:
        raise UserError(f"{model_dir}: no embedding weights (embed_tokens) in this model")
    n_vocab = int(embed.shape[0])
    hp["vocab_size"] = n_vocab
    mapper = tensor_mapper(arch, int(hp["num_hidden_layers"]))
    needed = int(sum(int(np.prod(v.shape)) for v in weights.values()) * kind.bytes_per_weight)
    with staged(out_file, folder=False, needed=needed) as staging:
        writer = gguf.GGUFWriter(str(staging), arch)
        writer.add_type(gguf.GGUFType.MODEL)
        writer.add_name(name or model_dir.name)
        writer.add_file_type(kind.file_type)
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
        add_metadata(writer, arch, hp)
        add_tokenizer(writer, model_dir, n_vocab, arch)
        items = sorted(weights.items())
        for i, (hf, value) in enumerate(items, 1):
            data = convert_tensor(arch, hp, hf, _as_numpy(value))
            if data is not None:
                target = gguf_tensor_name(mapper, hf)
                qtype = _tensor_qtype(target, data, kind)
                writer.add_tensor(target, gguf.quants.quantize(data, qtype), raw_dtype=qtype)
            if i % 16 == 0 or i == len(items):
                say(0.85 * i / len(items), f"converted {i}/{len(items)} tensors to {kind.label}")
        for target, data in extra_tensors(arch, hp):
            writer.add_tensor(target, data, raw_dtype=gguf.GGMLQuantizationType.F32)
        say(0.88, f"writing {out_file.name}")
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
    say(1.0, f"wrote {out_file.name}")
    return out_file
