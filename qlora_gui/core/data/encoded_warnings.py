"""Warnings about encoded data: turns a chat template leaves out or rewrites, prompts that seem unmasked."""

from __future__ import annotations

from .encode import EncodedSplit

# With completions only, a larger trained share than this usually means the prompt is not masked.
SUSPECT_TRAINED_SHARE = 0.6


def _template_warnings(name: str, enc: EncodedSplit) -> list[str]:
    out = [
        f"the chat template leaves out the {role} turn of {len(lines)} {name} row(s) (first: line {lines[0]}); "
        "the model trains without that text"
        for role, lines in enc.left_out.items()
    ]
    if enc.changed_lines:
        out.append(
            f"{len(enc.changed_lines)} {name} row(s) have an assistant turn that the chat template drops or "
            f"rewrites (first: line {enc.changed_lines[0]}): a dropped turn is not trained, a rewritten one is "
            "trained as the template prints it; check it in the token view"
        )
    if enc.reasoning_rows:
        out.append(
            f"in {enc.reasoning_rows} {name} row(s) the chat template leaves out the <think> reasoning of "
            "earlier assistant turns; only their answers are trained, as the model will see them"
        )
    if enc.unmarked_rows:
        out.append(
            f"{enc.unmarked_rows} {name} row(s) have an assistant turn with no end-of-turn token after it; "
            "the model will not learn where those answers end"
        )
    return out


def encoded_warnings(encoded: dict[str, EncodedSplit], mask_prompt: bool, train_share: float | None) -> list[str]:
    """What the encoded splits say about the template and the masks."""
    out = []
    for name, enc in encoded.items():
        out.extend(_template_warnings(name, enc))
    if mask_prompt and train_share is not None and train_share > SUSPECT_TRAINED_SHARE:
        out.append(
            f"completions only is on, yet {train_share:.0%} of the training tokens are trained: the "
            "prompts may not be masked as you expect; look at a row in the token view (the Data tab, or "
            "`qlora-gui check-data PATH --model DIR --mask-prompt --show LINE`)"
        )
    return out
