"""Small tokenizers that carry each model family's real chat template and special tokens.

The templates are the families' own Jinja text (tests/fixtures/chat_templates, see SOURCES.md there);
the vocabulary is a byte-level BPE trained on a few sentences, so the tests run offline in a second.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

TEMPLATES = Path(__file__).parent / "fixtures" / "chat_templates"


@dataclass(frozen=True)
class Family:
    template: str
    bos: str | None
    eos: str
    specials: tuple[str, ...]
    plain_added: tuple[str, ...] = ()  # single tokens that are not "special" (Qwen's <think>, <tool_call>)
    adds_bos: bool = False  # the tokenizer puts BOS before plain text
    extra_eos: tuple[str, ...] = ()  # generation_config's other end tokens
    system: bool = True  # the template accepts a system turn
    tools: bool = True  # the template renders tool calls and tool results
    ans_prefix: str = ""  # text the template puts between the generation prompt and an answer
    marker: str = ""  # the end-of-turn marker after an answer
    extra: dict = field(default_factory=dict)


_QWEN = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
_GEMMA = ("<pad>", "<eos>", "<bos>", "<start_of_turn>", "<end_of_turn>")

FAMILIES: dict[str, Family] = {
    "llama-3.2": Family(
        "llama-3.2.jinja",
        "<|begin_of_text|>",
        "<|eot_id|>",
        (
            "<|begin_of_text|>",
            "<|end_of_text|>",
            "<|start_header_id|>",
            "<|end_header_id|>",
            "<|eot_id|>",
            "<|eom_id|>",
            "<|python_tag|>",
        ),
        adds_bos=True,
        extra_eos=("<|end_of_text|>", "<|eom_id|>"),
        marker="<|eot_id|>",
    ),
    "qwen2.5": Family(
        "qwen2.5.jinja",
        None,
        "<|im_end|>",
        _QWEN,
        ("<tool_call>", "</tool_call>"),
        extra_eos=("<|endoftext|>",),
        marker="<|im_end|>",
    ),
    "qwen3": Family(
        "qwen3.jinja",
        None,
        "<|im_end|>",
        _QWEN,
        ("<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>", "<think>", "</think>"),
        extra_eos=("<|endoftext|>",),
        marker="<|im_end|>",
    ),
    "gemma-2": Family(
        "gemma-2.jinja",
        "<bos>",
        "<eos>",
        _GEMMA,
        adds_bos=True,
        extra_eos=("<end_of_turn>",),
        system=False,
        tools=False,
        marker="<end_of_turn>",
    ),
    "gemma-3": Family(
        "gemma-3.jinja",
        "<bos>",
        "<eos>",
        _GEMMA,
        adds_bos=True,
        extra_eos=("<end_of_turn>",),
        tools=False,
        marker="<end_of_turn>",
    ),
    "mistral-v0.3": Family(
        "mistral-v0.3.jinja",
        "<s>",
        "</s>",
        (
            "<unk>",
            "<s>",
            "</s>",
            "[INST]",
            "[/INST]",
            "[TOOL_CALLS]",
            "[AVAILABLE_TOOLS]",
            "[/AVAILABLE_TOOLS]",
            "[TOOL_RESULTS]",
            "[/TOOL_RESULTS]",
        ),
        adds_bos=True,
        ans_prefix=" ",
        marker="</s>",
    ),
    "phi-3": Family(
        "phi-3.jinja",
        "<s>",
        "<|endoftext|>",
        ("<unk>", "<s>", "</s>", "<|endoftext|>", "<|assistant|>", "<|end|>", "<|system|>", "<|user|>"),
        adds_bos=True,
        extra_eos=("<|end|>", "<|assistant|>"),
        tools=False,
        marker="<|end|>",
    ),
}

CORPUS = [
    "how many teams are in the city of Paris",
    "the weather is sunny and warm today",
    "select name from table",
    "you are a helpful assistant that answers briefly",
    "what is the capital of France",
    "Paris is the capital",
    "get the weather for a city",
    "it is 20 degrees in Paris",
    "think step by step about the question",
    "the answer is four teams",
    "and the score of the game",
    "list the players of the team",
    '{"name": "get_weather", "arguments": {"city": "Paris"}}',
    "Cutting Knowledge Date: December 2023",
    "Today Date: 26 Jul 2024",
    "Environment: ipython",
    "You are Qwen, created by Alibaba Cloud.",
]


def build_family_tokenizer(name: str, folder: Path) -> Path:
    """Write a tokenizer (and a config.json) for the family into folder; load it with load_tokenizer."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    fam = FAMILIES[name]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=list(fam.specials),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS * 3, trainer=trainer)
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in fam.plain_added])
    if fam.adds_bos:
        tok.post_processor = processors.TemplateProcessing(
            single=f"{fam.bos} $A",
            pair=f"{fam.bos} $A {fam.bos} $B",
            special_tokens=[(fam.bos, tok.token_to_id(fam.bos))],
        )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=fam.bos,
        eos_token=fam.eos,
        additional_special_tokens=[t for t in fam.specials if t not in (fam.bos, fam.eos)],
    )
    fast.chat_template = (TEMPLATES / fam.template).read_text(encoding="utf-8")
    folder.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(str(folder))
    eos_ids = [tok.token_to_id(t) for t in (fam.eos, *fam.extra_eos)]
    (folder / "config.json").write_text(json.dumps({"model_type": "llama", "eos_token_id": eos_ids}))
    return folder
