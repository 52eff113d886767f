"""Which rows a model finds hard: each held-out row's own loss, for the base and for the adapter.

Each row runs alone through the same loss the trainer and Evaluate use, so the rows' token-weighted mean
is the evaluation's loss (a test checks it). The rows with the highest adapter loss, and those whose loss
the adapter lowered least (or raised), are what to look at first when a fine-tune disappoints.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, cast

import numpy as np

from ..data.batching import make_batch
from ..data.encode import EncodedSplit
from ..data.formats import FORMATS
from ..data.intake import RawSplit
from ..train.losses import LossFn

SHOWN_ROWS = 20


@dataclass
class RowLoss:
    line: int  # in the split's file
    tokens: int  # trained tokens
    base_loss: float | None
    adapter_loss: float | None
    text: str  # a short view of the row

    @property
    def gain(self) -> float | None:
        """How much the adapter lowered this row's loss (negative: it raised it)."""
        if self.base_loss is None or self.adapter_loss is None:
            return None
        return self.base_loss - self.adapter_loss

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def row_loss_sums(model: Any, split: EncodedSplit, rows: list[int], loss_fn: LossFn) -> list[tuple[float, int]]:
    """(summed loss, trained tokens) of each row, one row at a time."""
    out = []
    for i in rows:
        loss_sum, tokens = loss_fn(model, *make_batch(split, np.array([i])).arrays())
        # Both are float32 scalars (the token count is a sum of weights).
        out.append((float(cast(float, loss_sum.item())), int(cast(float, tokens.item()))))
    return out


def row_text(raw: RawSplit | None, line: int) -> str:
    if raw is None or raw.format is None or line not in raw.lines:
        return ""
    return " · ".join(FORMATS[raw.format].preview(raw.rows[raw.lines.index(line)], width=160).values())


def hardest(rows: list[RowLoss], n: int = SHOWN_ROWS) -> tuple[list[RowLoss], list[RowLoss]]:
    """The n rows with the highest adapter loss, and the n the adapter improved least."""
    scored = [r for r in rows if r.adapter_loss is not None]
    highest = sorted(scored, key=lambda r: cast(float, r.adapter_loss), reverse=True)[:n]  # none is None
    compared = [r for r in scored if r.gain is not None]
    least = sorted(compared, key=lambda r: cast(float, r.gain))[:n]
    return highest, least


def rows_text(rows: list[RowLoss], n: int = SHOWN_ROWS) -> str:
    """The two lists as the CLI prints them."""
    highest, least = hardest(rows, n)

    def line(r: RowLoss) -> str:
        base = f"{r.base_loss:8.4f}" if r.base_loss is not None else "       –"
        gain = f"{r.gain:+8.4f}" if r.gain is not None else "       –"
        return f"  {r.line:>6} {r.tokens:>6} {base} {r.adapter_loss:8.4f} {gain}  {r.text[:90]}"

    head = f"  {'line':>6} {'tokens':>6} {'base':>8} {'adapter':>8} {'gain':>8}  row"
    out = [f"Highest adapter loss ({len(highest)} of {len(rows)} rows):", head, *map(line, highest)]
    if least:
        out += ["", f"Improved least by the adapter ({len(least)}):", head, *map(line, least)]
    return "\n".join(out)
