"""Tiny random models of each architecture GGUF export writes, with each family's tokenizer and template.

Byte-level BPE families use tests/chat_families.py's tokenizers; Mistral and Gemma 2 get a small
SentencePiece model (their real tokenizers are SentencePiece), trained in a tenth of a second.
"""

from __future__ import annotations

import dataclasses
import importlib
import io
import json
from pathlib import Path

from chat_families import CORPUS, FAMILIES, TEMPLATES, build_family_tokenizer

_BASE = dict(
    hidden_size=64,
    num_hidden_layers=2,
    intermediate_size=128,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
    rms_norm_eps=1e-6,
    max_position_embeddings=512,
    rope_theta=10000.0,
    vocab_size=448,
)
# model_type -> (extra config, chat family, SentencePiece tokenizer?)
ARCHS: dict[str, tuple[dict, str, bool]] = {
    "llama": (
        {
            "tie_word_embeddings": False,
            "rope_scaling": {
                "rope_type": "llama3",
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 128,
            },
        },
        "llama-3.2",
        False,
    ),
    "mistral": ({"tie_word_embeddings": False}, "mistral-v0.3", True),
    "qwen2": ({"tie_word_embeddings": True}, "qwen2.5", False),
    "qwen3": ({"tie_word_embeddings": True}, "qwen3", False),
    "gemma2": (
        {
            "query_pre_attn_scalar": 16,
            "attn_logit_softcapping": 50.0,
            "final_logit_softcapping": 30.0,
            "sliding_window": 128,
        },
        "gemma-2",
        True,
    ),
    "gemma3_text": (
        {"query_pre_attn_scalar": 16, "sliding_window": 128, "sliding_window_pattern": 2},
        "gemma-3",
        False,
    ),
    "phi3": (
        {
            "tie_word_embeddings": False,
            "original_max_position_embeddings": 256,
            "rope_scaling": {"type": "longrope", "long_factor": [1.5] * 8, "short_factor": [1.1] * 8},
        },
        "phi-3",
        False,
    ),
}


def _sentencepiece_tokenizer(family: str, folder: Path) -> dict:
    import sentencepiece as spm

    fam = FAMILIES[family]
    controls = [t for t in fam.specials if t not in ("<pad>", "<unk>", "<s>", "</s>", "<bos>", "<eos>")]
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS * 3),
        model_writer=buf,
        vocab_size=360,
        model_type="bpe",
        byte_fallback=True,
        control_symbols=controls,
        pad_id=0,
        eos_id=1,
        bos_id=2,
        unk_id=3,
        pad_piece="<pad>",
        bos_piece=fam.bos or "<s>",
        eos_piece=fam.eos,
        minloglevel=2,
        hard_vocab_limit=False,
    )
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tokenizer.model").write_bytes(buf.getvalue())
    template = (TEMPLATES / fam.template).read_text(encoding="utf-8")
    (folder / "tokenizer_config.json").write_text(
        json.dumps({"chat_template": template, "bos_token": fam.bos, "eos_token": fam.eos, "add_bos_token": True})
    )
    return {"bos_token_id": 2, "eos_token_id": 1, "pad_token_id": 0}


def build_arch_model(model_type: str, folder: Path) -> tuple[dict, dict, dict]:
    """(config, weights by Hugging Face name, the model class's settings) of a tiny random model in folder."""
    import mlx.core as mx
    from mlx.utils import tree_flatten

    extra, family, sentencepiece = ARCHS[model_type]
    if sentencepiece:
        ids = _sentencepiece_tokenizer(family, folder)
    else:
        build_family_tokenizer(family, folder)
        ids = {}
    config = {**_BASE, **extra, **ids, "model_type": model_type}
    (folder / "config.json").write_text(json.dumps(config))
    module = importlib.import_module(f"mlx_lm.models.{'llama' if model_type == 'mistral' else model_type}")
    mx.random.seed(0)
    args = module.ModelArgs.from_dict(config)
    model = module.Model(args)
    mx.eval(model.parameters())
    return config, dict(tree_flatten(model.parameters())), dataclasses.asdict(args)
