"""The tokenizer inside a GGUF file, as llama.cpp's convert_hf_to_gguf.py writes it.

Byte-level BPE tokenizers (Llama 3, Qwen, Phi-4, most current models) are written as
tokenizer.ggml.model = "gpt2" with their merges and a pre-tokenizer name llama.cpp knows;
SentencePiece ones (Llama 2, Mistral, Gemma, Phi-3) as "llama" with scores. Token types are
int32 (llama.cpp refuses other integer types). Special tokens (BOS/EOS/pad...), whether BOS is
added, and the chat template come from the tokenizer's own files via gguf's SpecialVocab.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import UserError

NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6
_SPECIAL_LOOKING = ("<pad>", "<bos>", "<eos>", "<unk>", "<mask>", "<s>", "</s>", "<start_of_turn>", "<end_of_turn>")


def _looks_special(token: str) -> bool:
    return token in _SPECIAL_LOOKING or (token.startswith("<|") and token.endswith("|>"))


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def is_byte_level_bpe(tokenizer_json: dict[str, Any]) -> bool:
    def byte_level(part: Any) -> bool:
        if not isinstance(part, dict):
            return False
        if part.get("type") == "ByteLevel":
            return True
        return any(byte_level(p) for p in part.get("pretokenizers") or part.get("decoders") or [])

    model = tokenizer_json.get("model") or {}
    return model.get("type") == "BPE" and (
        byte_level(tokenizer_json.get("decoder")) or byte_level(tokenizer_json.get("pre_tokenizer"))
    )


def pre_tokenizer_name(tokenizer_json: dict[str, Any]) -> str:
    """llama.cpp's name for the text splitting before BPE, from the split pattern in tokenizer.json."""
    text = json.dumps(tokenizer_json.get("pre_tokenizer") or {})
    if "\\\\p{N}{1,3}" in text:
        return "llama-bpe"  # Llama 3 (and cl100k-style tokenizers such as Phi-4's)
    if "[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+" in text:
        return "qwen2"  # Qwen2/2.5/3: digits one at a time
    return "gpt-2"  # plain ByteLevel with GPT-2's own pattern


def tokenizer_kind(model_dir: Path) -> str:
    """'gpt2' (byte-level BPE) or 'llama' (SentencePiece); a UserError when the folder has neither."""
    tokenizer_json = _read_json(model_dir / "tokenizer.json")
    if is_byte_level_bpe(tokenizer_json):
        return "gpt2"
    if (model_dir / "tokenizer.model").is_file():
        return "llama"
    raise UserError(
        f"{model_dir}: its tokenizer is neither a byte-level BPE tokenizer.json nor a SentencePiece "
        "tokenizer.model, so GGUF export cannot write it; export the MLX folder instead"
    )


def _bpe_vocab(model_dir: Path, n_vocab: int) -> tuple[list[str], list[int], str]:
    data = _read_json(model_dir / "tokenizer.json")
    vocab: dict[str, int] = dict(data["model"]["vocab"])
    added = {int(t["id"]): t for t in data.get("added_tokens") or []}
    for i, t in added.items():
        vocab[t["content"]] = i
    by_id = {i: tok for tok, i in vocab.items()}
    if by_id and max(by_id) >= n_vocab:
        raise UserError(f"{model_dir}: the tokenizer has ids up to {max(by_id)} but the model only {n_vocab} rows")
    tokens, types = [], []
    for i in range(n_vocab):
        token = by_id.get(i)
        if token is None:
            tokens.append(f"[PAD{i}]")
            types.append(UNUSED)
        elif i in added:
            special = bool(added[i].get("special")) or _looks_special(token)
            tokens.append(token if special else token.replace("\u2581", " "))
            types.append(CONTROL if special else USER_DEFINED)
        else:
            tokens.append(token)
            types.append(NORMAL)
    return tokens, types, pre_tokenizer_name(data)


def _sentencepiece_vocab(model_dir: Path, n_vocab: int) -> tuple[list[bytes], list[float], list[int]]:
    try:
        from sentencepiece import SentencePieceProcessor
    except ImportError as e:
        raise UserError(
            "writing a SentencePiece tokenizer needs the sentencepiece package (pip install sentencepiece)"
        ) from e
    sp = SentencePieceProcessor()
    sp.LoadFromFile(str(model_dir / "tokenizer.model"))
    tokens = [f"[PAD{i}]".encode() for i in range(n_vocab)]
    scores = [-10000.0] * n_vocab
    types = [UNUSED] * n_vocab
    for i in range(min(sp.vocab_size(), n_vocab)):
        tokens[i] = sp.IdToPiece(i).encode("utf-8")
        scores[i] = sp.GetScore(i)
        types[i] = (
            UNKNOWN
            if sp.IsUnknown(i)
            else CONTROL
            if sp.IsControl(i)
            else UNUSED
            if sp.IsUnused(i)
            else BYTE
            if sp.IsByte(i)
            else NORMAL
        )
    for name, i in _read_json(model_dir / "added_tokens.json").items():
        if int(i) < n_vocab:
            tokens[int(i)], scores[int(i)], types[int(i)] = name.encode("utf-8"), -1000.0, USER_DEFINED
    decoder = _read_json(model_dir / "tokenizer_config.json").get("added_tokens_decoder") or {}
    for i, info in [(int(k), v) for k, v in decoder.items()] + [
        (int(t["id"]), t) for t in _read_json(model_dir / "tokenizer.json").get("added_tokens") or []
    ]:
        if i >= n_vocab:
            continue
        content = str(info["content"])
        special = bool(info.get("special")) or _looks_special(content)
        tokens[i] = (content if special else content.replace("\u2581", " ")).encode("utf-8")
        scores[i] = -1000.0
        types[i] = CONTROL if special else USER_DEFINED
    return tokens, scores, types


def add_tokenizer(writer: Any, model_dir: Path, n_vocab: int, arch: str) -> str:
    """Write the tokenizer, its special tokens and chat template; returns the tokenizer model written."""
    import logging

    import gguf

    logging.getLogger("gguf").setLevel(logging.ERROR)  # its notes on odd tokenizer files are not the user's business
    kind = tokenizer_kind(model_dir)
    if kind == "gpt2":
        tokens, types, pre = _bpe_vocab(model_dir, n_vocab)
        writer.add_tokenizer_model("gpt2")
        writer.add_tokenizer_pre(pre)
        writer.add_token_list(tokens)
        writer.add_token_types(types)
        special = gguf.SpecialVocab(model_dir, load_merges=True, n_vocab=n_vocab)
    else:
        pieces, scores, types = _sentencepiece_vocab(model_dir, n_vocab)
        writer.add_tokenizer_model("llama")
        writer.add_tokenizer_pre("default")
        writer.add_token_list(pieces)
        writer.add_token_scores(scores)
        writer.add_token_types(types)
        if arch in ("gemma2", "gemma3"):
            writer.add_add_space_prefix(False)
        special = gguf.SpecialVocab(model_dir, n_vocab=n_vocab)
    if special.chat_template is None:  # newer tokenizers keep it in its own file
        for name in ("chat_template.jinja", "chat_template.json"):
            path = model_dir / name
            if path.is_file():
                text = path.read_text(encoding="utf-8")
                special.chat_template = json.loads(text).get("chat_template") if name.endswith("json") else text
                break
    special.add_to_gguf(writer, quiet=True)
    return kind
