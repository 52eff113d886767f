"""The chat template: rendering turns as the model sees them, the fallback, and what to say when it refuses.

A tokenizer without a template gets the plain fallback below, which the README documents:

    <bos>System: {content}\\n\\nUser: {content}\\n\\nAssistant: {content}<eos>\\n\\n

and a generation prompt that ends in "Assistant:" (no space, so BPE cannot merge it
into the answer).
"""

from __future__ import annotations

import time
from typing import Any

from .chat_spans import TemplateShape, template_shape

FALLBACK_TEMPLATE_DOC = "System: …\\n\\nUser: …\\n\\nAssistant: …<eos>"
_TODAY = time.strftime("%d %b %Y")  # the format Llama 3.x templates use

# Text only one family's template holds -> the family's name, checked in this order.
_FAMILY_MARKS = (
    ("<|start_header_id|>", "Llama 3"),
    ("<start_of_turn>", "Gemma"),
    ("[AVAILABLE_TOOLS]", "Mistral"),
    ("[INST]", "Mistral/Llama 2"),
    ("<think>", "Qwen3"),
    ("<|im_start|>", "Qwen (ChatML)"),
    ("<|end|>", "Phi-3"),
)
_ROLE_RULES = {
    "system": "it has no system role; put the system text at the start of the first user turn, or drop that turn",
    "tool": "it has no tool role; put the tool's answer in a user turn, or pick a model whose template has tools",
}


def has_chat_template(tokenizer: Any) -> bool:
    flag = getattr(tokenizer, "has_chat_template", None)
    return bool(flag) if flag is not None else getattr(tokenizer, "chat_template", None) is not None


def render_fallback(messages: list[dict], add_generation_prompt: bool, tokenizer: Any) -> str:
    bos = getattr(tokenizer, "bos_token", None) or ""
    eos = getattr(tokenizer, "eos_token", None) or ""
    parts = [bos]
    for turn in messages:
        role, content = turn["role"], turn.get("content") or ""
        if role == "assistant":
            parts.append(f"Assistant: {content}{eos}\n\n")
        else:
            parts.append(f"{role.capitalize()}: {content}\n\n")
    if add_generation_prompt:
        # No trailing space: BPE would merge it into the answer's first token.
        parts.append("Assistant:")
    return "".join(parts)


def render_chat(
    tokenizer: Any, messages: list[dict], tools: list | None = None, add_generation_prompt: bool = False
) -> str:
    """The exact text the model sees for these turns; training, evaluation and the playground all use it."""
    if not has_chat_template(tokenizer):
        return render_fallback(messages, add_generation_prompt, tokenizer)
    return tokenizer.apply_chat_template(
        messages, add_generation_prompt=add_generation_prompt, tokenize=False, **_template_kwargs(tokenizer, tools)
    )


def _template_kwargs(tokenizer: Any, tools: list | None) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"tools": tools} if tools else {}
    template = getattr(_hf(tokenizer), "chat_template", None)
    if isinstance(template, str) and "date_string" in template:
        kwargs["date_string"] = _TODAY  # Llama 3.x prints today's date: one date for every rendering here
    return kwargs


def render_chats(
    tokenizer: Any, conversations: list[list[dict]], tools: list | None = None, add_generation_prompt: bool = False
) -> list[str]:
    """`render_chat` of each conversation, in one call to the template where the tokenizer takes a batch
    (most of a rendering's cost is the call around the template, not the template itself). Raises as
    `render_chat` does when the template rejects any of them."""
    if not has_chat_template(tokenizer) or len(conversations) < 2 or getattr(tokenizer, "_chat_template", None):
        # mlx-lm's own template functions (`_chat_template`) take one conversation
        return [render_chat(tokenizer, m, tools, add_generation_prompt) for m in conversations]
    out = tokenizer.apply_chat_template(
        conversations, add_generation_prompt=add_generation_prompt, tokenize=False, **_template_kwargs(tokenizer, tools)
    )
    if isinstance(out, list) and len(out) == len(conversations) and all(isinstance(t, str) for t in out):
        return out
    return [render_chat(tokenizer, m, tools, add_generation_prompt) for m in conversations]


def _hf(tokenizer: Any) -> Any:
    """The Hugging Face tokenizer inside mlx-lm's TokenizerWrapper."""
    return getattr(tokenizer, "_tokenizer", tokenizer)


def special_token_texts(tokenizer: Any) -> list[str]:
    """Every added and special token's text: the candidates for turn markers."""
    hf = _hf(tokenizer)
    texts = {str(t) for t in getattr(hf, "all_special_tokens", []) or []}
    decoder = getattr(hf, "added_tokens_decoder", None) or {}
    texts.update(getattr(t, "content", str(t)) for t in decoder.values())
    return sorted(t for t in texts if t.strip())


def eos_token_texts(tokenizer: Any) -> list[str]:
    """The tokenizer's end-of-text tokens (mlx-lm also counts the generation config's), as text."""
    ids = set(getattr(tokenizer, "eos_token_ids", None) or ())
    if getattr(tokenizer, "eos_token_id", None) is not None:
        ids.add(tokenizer.eos_token_id)
    hf = _hf(tokenizer)
    return [t for t in (hf.convert_ids_to_tokens(i) for i in sorted(ids)) if isinstance(t, str) and t]


def chat_shape(tokenizer: Any, tools: list | None = None) -> TemplateShape:
    """This tokenizer's template shape, learned once and kept on the tokenizer object."""
    cache = getattr(tokenizer, "_qlora_shapes", None)
    if cache is None:
        cache = {}
        try:
            tokenizer._qlora_shapes = cache
        except AttributeError:
            pass
    key = (bool(tools), getattr(_hf(tokenizer), "chat_template", None))
    if key not in cache:
        cache[key] = template_shape(
            lambda m, gen: render_chat(tokenizer, m, tools, gen),
            special_token_texts(tokenizer),
            eos_token_texts(tokenizer),
        )
    return cache[key]


def template_family(tokenizer: Any) -> str | None:
    text = getattr(_hf(tokenizer), "chat_template", None) or getattr(tokenizer, "chat_template", None)
    if not isinstance(text, str):
        return None
    return next((name for mark, name in _FAMILY_MARKS if mark in text), None)


def template_description(tokenizer: Any) -> str:
    """Which template the data goes through, for the report."""
    if not has_chat_template(tokenizer):
        return f"the plain fallback '{FALLBACK_TEMPLATE_DOC}' (the tokenizer has no chat template)"
    family = template_family(tokenizer)
    return "the model's own chat template" + (f" ({family})" if family else "")


def rejection_hint(error: str, roles: set[str], tokenizer: Any) -> str:
    """What to change in a row the template refused, in the words of the template's own rule."""
    family = template_family(tokenizer)
    whose = f"{family}'s chat template" if family else "the model's chat template"
    msg = error.lower()
    if "alternate" in msg:
        return (
            f"{whose} needs the turns to alternate user/assistant/user/…, starting with a user turn "
            "(a system turn may come first); merge or reorder the turns"
        )
    if "id" in msg and ("9" in msg or "length" in msg):
        return f"{whose} needs every tool call id to be exactly 9 letters or digits; shorten or pad the ids"
    for role in ("system", "tool"):
        if role in roles and (role in msg or "only" in msg or "not supported" in msg):
            return f"{whose} does not accept a '{role}' turn: {_ROLE_RULES[role]}"
    return f"fix the turns to fit {whose}"
