"""What llama.cpp expects of each architecture we write: its GGUF name, hyperparameters and tensors.

The keys and tensor changes follow llama.cpp's convert_hf_to_gguf.py, so a file we write loads
as one converted there would: Llama's q/k rows are permuted into GGML's rotary layout (Mistral
is a Llama there), Gemma's RMSNorm weights are stored with their +1 offset, Gemma 2's output head
is the embedding (Gemma 3 gets a head only when the checkpoint has its own: mlx-lm drops a tied one),
Phi-3's fused qkv and gate_up projections are written as they are (llama.cpp splits them), and the
rope scaling of Llama 3 and Phi-3 becomes rope factor tensors.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np

from ..errors import UserError

# mlx-lm / Hugging Face model_type -> llama.cpp architecture
ARCHITECTURES = {
    "llama": "llama",
    "mistral": "llama",
    "qwen2": "qwen2",
    "qwen3": "qwen3",
    "gemma2": "gemma2",
    "gemma3": "gemma3",
    "gemma3_text": "gemma3",
    "phi3": "phi3",
}
# Prefixes mlx-lm puts before the Hugging Face names of a multimodal model's language part.
_PREFIXES = ("language_model.",)


def gguf_architecture(model_type: str) -> str:
    """llama.cpp's name for the architecture; a UserError naming it when we cannot write it."""
    arch = ARCHITECTURES.get(model_type)
    if arch is None:
        raise UserError(unsupported_reason(model_type))
    return arch


def unsupported_reason(model_type: str) -> str:
    kinds = ", ".join(sorted(set(ARCHITECTURES) - {"gemma3_text"}))
    return (
        f"GGUF export does not know the '{model_type or 'unknown'}' architecture (it writes {kinds}); "
        "export the MLX folder or the PEFT adapter instead"
    )


def text_hparams(config: dict[str, Any], model_args: dict[str, Any] | None = None) -> dict[str, Any]:
    """The language model's settings: a multimodal config's text_config, with the model class's defaults."""
    hp = dict(model_args or {})
    if isinstance(hp.get("text_config"), dict):
        hp = {**hp, **hp["text_config"]}
    hp.update({k: v for k, v in config.items() if v is not None})
    if isinstance(config.get("text_config"), dict):
        hp.update(config["text_config"])
    return hp


def head_dim(hp: dict[str, Any]) -> int:
    return int(hp.get("head_dim") or hp["hidden_size"] // hp["num_attention_heads"])


def add_metadata(writer: Any, arch: str, hp: dict[str, Any]) -> None:
    """The hyperparameters convert_hf_to_gguf.py writes for this architecture."""
    n_head = int(hp["num_attention_heads"])
    n_kv = int(hp.get("num_key_value_heads") or n_head)
    writer.add_block_count(int(hp["num_hidden_layers"]))
    writer.add_context_length(int(hp.get("max_position_embeddings") or 4096))
    writer.add_embedding_length(int(hp["hidden_size"]))
    writer.add_feed_forward_length(int(hp["intermediate_size"]))
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_kv)
    writer.add_layer_norm_rms_eps(float(hp.get("rms_norm_eps") or 1e-6))
    theta = hp.get("rope_theta") or (hp.get("rope_parameters") or {}).get("rope_theta")
    if arch == "gemma3":
        theta = theta or 1_000_000.0
    if theta:
        writer.add_rope_freq_base(float(theta))
    if arch in ("llama", "qwen2", "qwen3"):
        writer.add_rope_dimension_count(head_dim(hp))
        if hp.get("head_dim"):
            writer.add_key_length(int(hp["head_dim"]))
            writer.add_value_length(int(hp["head_dim"]))
    if _rope_type(hp) == "linear":  # Gemma 3's larger models, some Llama fine-tunes
        from gguf import RopeScalingType

        writer.add_rope_scaling_type(RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(float(hp["rope_scaling"]["factor"]))
    if arch == "llama":
        writer.add_vocab_size(int(hp["vocab_size"]))
    if arch in ("gemma2", "gemma3"):
        writer.add_key_length(head_dim(hp))
        writer.add_value_length(head_dim(hp))
    if arch == "gemma2":
        writer.add_attn_logit_softcapping(float(hp.get("attn_logit_softcapping") or 50.0))
        writer.add_final_logit_softcapping(float(hp.get("final_logit_softcapping") or 30.0))
        writer.add_sliding_window(int(hp.get("sliding_window") or 4096))
    if arch == "gemma3":
        if hp.get("final_logit_softcapping"):
            writer.add_final_logit_softcapping(float(hp["final_logit_softcapping"]))
        if hp.get("sliding_window_pattern") != 1 and hp.get("sliding_window"):
            writer.add_sliding_window(int(hp["sliding_window"]))
    if arch == "phi3":
        writer.add_rope_dimension_count(int(hp.get("partial_rotary_factor", 1.0) * hp["hidden_size"]) // n_head)
        original = hp.get("original_max_position_embeddings") or hp.get("max_position_embeddings") or 4096
        writer.add_rope_scaling_orig_ctx_len(int(original))
        writer.add_sliding_window(int(hp.get("sliding_window") or 0))
        if _rope_type(hp) in ("su", "longrope"):  # Phi-3 128k, Phi-3.5: long/short rope factors (extra_tensors)
            scale = float(hp["max_position_embeddings"]) / float(original)
            factor = math.sqrt(1 + math.log(scale) / math.log(float(original))) if scale > 1.0 else 1.0
            writer.add_rope_scaling_attn_factors(factor)


def _rope_type(hp: dict[str, Any]) -> str:
    scaling = hp.get("rope_scaling") or {}
    return str(scaling.get("rope_type", scaling.get("type", ""))).lower()


def llama_permute(weights: np.ndarray, n_head: int, n_head_kv: int | None = None) -> np.ndarray:
    """Hugging Face's rotary layout (halves) to GGML's (interleaved pairs), row-wise, as convert_hf does."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (
        weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


def hf_name(name: str) -> str:
    for prefix in _PREFIXES:
        if name.startswith(prefix):
            return name[len(prefix) :]
    return name


def tensor_mapper(arch: str, n_blocks: int) -> Any:
    import gguf

    arch_id = next(a for a, n in gguf.MODEL_ARCH_NAMES.items() if n == arch)
    return gguf.TensorNameMap(arch_id, n_blocks)


def gguf_tensor_name(mapper: Any, name: str) -> str:
    mapped = mapper.get_name(hf_name(name), try_suffixes=(".weight", ".bias"))
    if mapped is None:
        raise UserError(
            f"cannot name the tensor '{name}' for llama.cpp; this model's layout is not one GGUF export knows"
        )
    return str(mapped)


def convert_tensor(arch: str, hp: dict[str, Any], name: str, data: np.ndarray) -> np.ndarray | None:
    """The tensor as llama.cpp stores it, or None for one it does not take (Gemma 2's output head)."""
    base = hf_name(name)
    if arch == "gemma2" and base.startswith("lm_head."):
        return None
    if arch in ("gemma2", "gemma3") and base.endswith("norm.weight"):
        return data + 1.0
    if arch == "llama" and base.endswith(("q_proj.weight", "q_proj.bias")):
        return llama_permute(data, int(hp["num_attention_heads"]), int(hp["num_attention_heads"]))
    if arch == "llama" and base.endswith(("k_proj.weight", "k_proj.bias")):
        n_head = int(hp["num_attention_heads"])
        return llama_permute(data, n_head, int(hp.get("num_key_value_heads") or n_head))
    return data


def extra_tensors(arch: str, hp: dict[str, Any]) -> Iterator[tuple[str, np.ndarray]]:
    """Tensors llama.cpp wants that the checkpoint does not hold: Llama 3's and Phi-3's rope factors."""
    scaling = hp.get("rope_scaling") or {}
    if arch == "phi3" and _rope_type(hp) in ("su", "longrope"):
        yield "rope_factors_long.weight", np.asarray(scaling["long_factor"], dtype=np.float32)
        yield "rope_factors_short.weight", np.asarray(scaling["short_factor"], dtype=np.float32)
        return
    if arch != "llama" or _rope_type(hp) != "llama3":
        return
    dim = head_dim(hp)
    base = float(hp.get("rope_theta", 10000.0))
    freqs = 1.0 / (base ** (np.arange(0, dim, 2, dtype=np.float32) / dim))
    factor = float(scaling.get("factor", 8.0))
    low, high = float(scaling.get("low_freq_factor", 1.0)), float(scaling.get("high_freq_factor", 4.0))
    old_len = float(scaling.get("original_max_position_embeddings", 8192))
    factors = []
    for freq in freqs:
        wavelen = 2 * math.pi / freq
        if wavelen < old_len / high:
            factors.append(1.0)
        elif wavelen > old_len / low:
            factors.append(factor)
        else:
            smooth = (old_len / wavelen - low) / (high - low)
            factors.append(1 / ((1 - smooth) / factor + smooth))
    yield "rope_freqs.weight", np.asarray(factors, dtype=np.float32)
