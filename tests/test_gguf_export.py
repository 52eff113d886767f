"""GGUF files of every architecture we write, read back with llama.cpp's own reader (gguf.GGUFReader)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from chat_families import FAMILIES, TEMPLATES
from gguf import GGUFReader, GGUFValueType
from gguf.quants import dequantize
from gguf_models import ARCHS, build_arch_model

from qlora_gui.core.after.gguf_arch import llama_permute
from qlora_gui.core.after.gguf_export import GGUF_TYPES, gguf_file_name, write_gguf
from qlora_gui.core.errors import UserError

# Each architecture with one of the types, so every type is written by more than one architecture.
CASES = {
    "llama": ("q4_0", "llama", "gpt2"),
    "mistral": ("f16", "llama", "llama"),
    "qwen2": ("q8_0", "qwen2", "gpt2"),
    "qwen3": ("bf16", "qwen3", "gpt2"),
    "gemma2": ("q8_0", "gemma2", "llama"),
    "gemma3_text": ("q4_0", "gemma3", "gpt2"),
    "phi3": ("f16", "phi3", "gpt2"),
}


def field(reader: GGUFReader, key: str):
    return reader.fields[key].contents()


def weight(reader: GGUFReader, name: str) -> np.ndarray:
    t = next(t for t in reader.tensors if t.name == name)
    return dequantize(t.data, t.tensor_type).reshape(tuple(reversed([int(n) for n in t.shape])))


@pytest.mark.parametrize("model_type", list(CASES))
def test_each_architecture_reads_back_as_llama_cpp_expects(tmp_path, model_type):
    key, arch, tokenizer_model = CASES[model_type]
    kind = GGUF_TYPES[key]
    folder = tmp_path / model_type
    config, weights, args = build_arch_model(model_type, folder)
    out = write_gguf(folder, config, weights, tmp_path / gguf_file_name(model_type, kind), kind, model_args=args)
    assert out.name == f"{model_type}-{kind.label}.gguf" and not list(tmp_path.glob(".*partial*"))
    r = GGUFReader(out)
    assert field(r, "general.architecture") == arch and field(r, "general.file_type") == kind.file_type
    assert field(r, f"{arch}.block_count") == 2 and field(r, f"{arch}.attention.head_count_kv") == 2
    family = FAMILIES[ARCHS[model_type][1]]
    assert field(r, "tokenizer.chat_template") == (TEMPLATES / family.template).read_text(encoding="utf-8")
    assert field(r, "tokenizer.ggml.model") == tokenizer_model
    tokens = field(r, "tokenizer.ggml.tokens")
    assert len(tokens) == config["vocab_size"] == len(field(r, "tokenizer.ggml.token_type"))
    assert r.fields["tokenizer.ggml.token_type"].types == [GGUFValueType.ARRAY, GGUFValueType.INT32]
    eos = tokens[field(r, "tokenizer.ggml.eos_token_id")]
    assert eos == family.eos
    types = field(r, "tokenizer.ggml.token_type")
    if tokenizer_model == "gpt2":
        assert field(r, "tokenizer.ggml.merges") and types[tokens.index(family.eos)] == 3  # CONTROL
        assert field(r, "tokenizer.ggml.pre") == "gpt-2"  # the fixtures split text as GPT-2 does
    else:
        assert len(field(r, "tokenizer.ggml.scores")) == len(tokens) and 6 in types  # BYTE pieces
    # Tensor types: 2-D weights of the chosen type (Q4_0 keeps the embedding and head at Q8_0), 1-D at F32.
    by_name = {t.name: t.tensor_type.name for t in r.tensors}
    assert by_name["blk.0.attn_norm.weight"] == "F32"
    assert by_name["blk.1.ffn_down.weight"] == kind.label
    assert by_name["token_embd.weight"] == ("Q8_0" if key == "q4_0" else kind.label)
    embed = np.array(weights["model.embed_tokens.weight"])
    tolerance = {"f16": 1e-3, "bf16": 1e-2, "q8_0": 2e-2, "q4_0": 2e-2}[key]
    assert np.abs(weight(r, "token_embd.weight") - embed).max() < tolerance * max(1.0, np.abs(embed).max())
    if model_type in ("llama", "mistral"):  # q/k rows in GGML's rotary order
        q = np.array(weights["model.layers.0.self_attn.k_proj.weight"])
        got = weight(r, "blk.0.attn_k.weight")
        assert np.abs(got - llama_permute(q, 4, 2)).max() < 0.1 < np.abs(got - q).max()
    if model_type == "llama":
        assert by_name["rope_freqs.weight"] == "F32" and "output.weight" in by_name
    if arch.startswith("gemma"):  # RMSNorm weights stored as 1 + w
        norm = np.array(weights["model.layers.0.input_layernorm.weight"])
        assert np.allclose(weight(r, "blk.0.attn_norm.weight"), norm + 1)
        # Gemma 2's head is always the embedding; Gemma 3's too, unless the checkpoint has its own (this one does)
        assert ("output.weight" in by_name) == (arch == "gemma3") == ("lm_head.weight" in weights)
        assert field(r, f"{arch}.attention.key_length") == 16
    if arch == "gemma2":
        assert field(r, "gemma2.attn_logit_softcapping") == 50.0 and field(r, "gemma2.attention.sliding_window") == 128
    if arch == "phi3":  # fused projections, split by llama.cpp
        assert {"blk.0.attn_qkv.weight", "blk.0.ffn_up.weight"} <= set(by_name) and "blk.0.attn_q.weight" not in by_name
        assert np.allclose(weight(r, "rope_factors_short.weight"), 1.1) and by_name["rope_factors_long.weight"] == "F32"
    if arch == "qwen2":
        assert by_name["blk.0.attn_q.bias"] == "F32"
    if arch == "qwen3":
        assert by_name["blk.0.attn_q_norm.weight"] == "F32"


def test_the_pre_tokenizer_is_named_from_the_split_pattern():
    from qlora_gui.core.after.gguf_vocab import pre_tokenizer_name

    letters = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|"
    rest = r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"

    def split(pattern: str) -> dict:
        return {
            "pre_tokenizer": {"type": "Sequence", "pretokenizers": [{"type": "Split", "pattern": {"Regex": pattern}}]}
        }

    assert pre_tokenizer_name(split(letters + r"\p{N}{1,3}" + rest)) == "llama-bpe"  # Llama 3
    assert pre_tokenizer_name(split(letters + r"\p{N}" + rest)) == "qwen2"  # Qwen 2, 2.5, 3
    assert pre_tokenizer_name({"pre_tokenizer": {"type": "ByteLevel", "use_regex": True}}) == "gpt-2"


def test_an_architecture_we_cannot_write_is_refused_by_name_before_any_work(tmp_path):
    from qlora_gui.core.after.gguf_export import check_gguf_export

    config, weights, _ = build_arch_model("qwen2", tmp_path / "m")
    with pytest.raises(UserError, match="'starcoder2'"):
        write_gguf(
            tmp_path / "m", {**config, "model_type": "starcoder2"}, weights, tmp_path / "x.gguf", GGUF_TYPES["f16"]
        )
    (tmp_path / "m" / "tokenizer.json").write_text(json.dumps({"model": {"type": "WordPiece"}}))
    with pytest.raises(UserError, match="tokenizer"):
        check_gguf_export(tmp_path / "m", config)
    assert not list(tmp_path.glob("*.gguf")) and not list(tmp_path.glob(".*"))


def test_a_full_disk_says_so_and_leaves_nothing(tmp_path, monkeypatch):
    import errno

    import gguf

    config, weights, _ = build_arch_model("qwen2", tmp_path / "m")

    def full(*_a, **_k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(gguf.GGUFWriter, "write_tensors_to_file", full)
    with pytest.raises(UserError, match="disk is full"):
        write_gguf(tmp_path / "m", config, weights, tmp_path / "out" / "m-F16.gguf", GGUF_TYPES["f16"])
    assert list((tmp_path / "out").iterdir()) == []


def test_mlx_lms_gguf_writer_is_not_used():
    """Its files do not load in llama.cpp (uint32 token types, always SentencePiece, no chat template)."""
    from pathlib import Path

    import qlora_gui

    sources = Path(qlora_gui.__file__).parent.rglob("*.py")
    assert not [p.name for p in sources if "mlx_lm.gguf" in p.read_text() or "convert_to_gguf" in p.read_text()]
