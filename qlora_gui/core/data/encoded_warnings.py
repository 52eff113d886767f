"""Warnings about encoded data: turns a chat template leaves out or rewrites, prompts that seem unmasked."""

from __future__ import annotations

import numpy as np

from .encode import EncodedSplit
from .ragged import Ragged

# Positions read at once when counting unmasked rows: memory stays bounded for any dataset and row length (a block
# of 65,536 rows of three-turn chats was 30 million positions, whose running count took 240 MB).
POSITIONS_PER_BLOCK = 1 << 22


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


def unmasked_rows(trained: Ragged) -> int:
    """Rows trained on every position after the first (which is never a target): their prompts were not masked."""
    count, first = 0, 0
    while first < len(trained):
        fits = int(np.searchsorted(trained.starts, trained.starts[first] + POSITIONS_PER_BLOCK, "right")) - 1
        stop = min(max(fits, first + 1), len(trained))  # as many rows as fit in a block, at least one
        starts = trained.starts[first : stop + 1] - trained.starts[first]
        masked = np.concatenate([[0], np.cumsum(~trained.rows_values(first, stop), dtype=np.int64)])
        first = stop
        lengths = np.diff(starts)
        after_first = masked[starts[1:]] - masked[np.minimum(starts[:-1] + 1, starts[1:])]
        count += int(np.count_nonzero((lengths > 1) & (after_first == 0)))
    return count


def encoded_warnings(encoded: dict[str, EncodedSplit], mask_prompt: bool) -> list[str]:
    """What the encoded splits say about the template and the masks."""
    out = []
    for name, enc in encoded.items():
        out.extend(_template_warnings(name, enc))
    # Completions only masks at least the prompt's tokens of a row that has one (a long answer may still make
    # most tokens trained: that is no sign of trouble). A row trained on every token is.
    unmasked = unmasked_rows(encoded["train"].trained) if mask_prompt and "train" in encoded else 0
    if unmasked:
        out.append(
            f"completions only is on, yet {unmasked} training row(s) have no token masked: their prompts are "
            "trained as well; look at such a row in the token view (the Data tab, or "
            "`qlora-gui check-data PATH --model DIR --mask-prompt --show LINE`)"
        )
    return out
