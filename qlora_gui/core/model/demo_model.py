"""A tiny Llama with random weights and a small BPE tokenizer, built locally.

It lets a newcomer try the whole flow offline in a minute, and it is the model
the tests and benchmarks train. It learns, but it knows nothing: its answers
are noise until trained. The folder is in Hugging Face layout, so `mlx_lm.load`
reads it like any other model.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..resources import sample_data_path

RANDOM_WEIGHTS_KEY = "qlora_gui_random_weights"  # in config.json: kept by mlx-lm's convert and fuse
DEMO_README = "Demo model built by QLoRA Studio: a tiny Llama with random weights."
DEMO_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}{{ eos_token }}\n"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
ROLE_TOKENS = ["<|system|>", "<|user|>", "<|assistant|>", "<|tool|>"]


@dataclass
class DemoModelSpec:
    vocab_size: int = 512
    hidden_size: int = 64
    num_layers: int = 2
    intermediate_size: int = 128
    num_heads: int = 4
    num_kv_heads: int = 2
    chat_template: bool = True
    seed: int = 0
    model_vocab_size: int | None = None  # embedding rows when larger than the tokenizer (real models pad theirs)
    tie_word_embeddings: bool = False
    dtype: str = "float32"  # or "bfloat16", "float16"


def _corpus_from_sample() -> list[str]:
    texts = []
    for line in sample_data_path().read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        texts.append(row.get("prompt", "") + " " + row.get("completion", ""))
    return texts


def build_tokenizer(out_dir: Path, corpus: Iterable[str], spec: DemoModelSpec) -> Any:  # PreTrainedTokenizerFast
    """Train a byte-level BPE tokenizer on the corpus and save it in HF layout."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<s>", "</s>", "<pad>"] + ROLE_TOKENS
    trainer = trainers.BpeTrainer(
        vocab_size=spec.vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(corpus), trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", tok.token_to_id("<s>"))]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        additional_special_tokens=ROLE_TOKENS,
    )
    if spec.chat_template:
        fast.chat_template = DEMO_CHAT_TEMPLATE
    fast.save_pretrained(str(out_dir))
    return fast


def has_random_weights(model_dir: str | Path) -> bool:
    """Whether a model folder holds a demo model's random weights (or a fine-tune of one)."""
    folder = Path(model_dir)
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return False
    if isinstance(config, dict) and config.get(RANDOM_WEIGHTS_KEY):
        return True
    readme = folder / "README.md"  # demo models built before the key existed
    return readme.is_file() and readme.read_text(errors="replace").startswith(DEMO_README)


def build_demo_model(
    out_dir: str | Path, spec: DemoModelSpec | None = None, corpus: Iterable[str] | None = None
) -> Path:
    """Write a random-weight Llama and its tokenizer to out_dir; returns the folder."""
    import mlx.core as mx
    from mlx.utils import tree_flatten
    from mlx_lm.models import llama

    spec = spec or DemoModelSpec()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(out, corpus if corpus is not None else _corpus_from_sample(), spec)
    config = {
        "model_type": "llama",
        "architectures": ["LlamaForCausalLM"],
        "hidden_size": spec.hidden_size,
        "num_hidden_layers": spec.num_layers,
        "intermediate_size": spec.intermediate_size,
        "num_attention_heads": spec.num_heads,
        "num_key_value_heads": spec.num_kv_heads,
        "rms_norm_eps": 1e-5,
        "vocab_size": max(len(tokenizer), spec.model_vocab_size or 0),
        "max_position_embeddings": 4096,
        "rope_theta": 10000.0,
        "tie_word_embeddings": spec.tie_word_embeddings,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "torch_dtype": spec.dtype,
        RANDOM_WEIGHTS_KEY: True,
    }
    mx.random.seed(spec.seed)
    model = llama.Model(llama.ModelArgs.from_dict(config))
    model.set_dtype(getattr(mx, spec.dtype))
    mx.eval(model.parameters())
    mx.save_safetensors(
        str(out / "model.safetensors"), dict(tree_flatten(model.parameters())), metadata={"format": "mlx"}
    )
    (out / "config.json").write_text(json.dumps(config, indent=2))
    (out / "README.md").write_text(DEMO_README + "\n")
    return out


def demo_model_dir() -> Path:
    """Where the app keeps its demo model: in the user's data folder, built the first time it is picked."""
    from platformdirs import user_data_dir

    return Path(user_data_dir("QLoRA Studio", appauthor=False)) / "demo-model"


def ensure_demo_model(path: Path) -> str:
    """The demo model in `path`, built there first unless it already is."""
    if not (path / "model.safetensors").is_file():
        build_demo_model(path)
    return str(path)
