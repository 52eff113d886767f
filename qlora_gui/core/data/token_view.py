"""One row exactly as the model sees it: its tokens, which are trained, and where truncation cuts it.

The Data tab and `qlora-gui check-data --show LINE` both show this view. It
encodes the row through the same code the trainer uses, so what it shows is
what is trained.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import UserError
from .encode import encode_rows
from .intake import RawSplit
from .problems import Problems
from .vision_encode import encode_vision_split, image_token_id
from .vision_rows import VISION

_ANSI_TRAINED = ("\x1b[30;48;5;114m", "\x1b[30;48;5;151m")  # two greens, alternating: token boundaries show
_ANSI_MASKED = "\x1b[90m"
_ANSI_CUT = "\x1b[9;90m"
_ANSI_MARK = "\x1b[1;31m"
_ANSI_RESET = "\x1b[0m"
PICTURE_MARK = "▣"  # in every desktop font, unlike a picture emoji


@dataclass(frozen=True)
class TokenPiece:
    text: str  # the characters this token stands for (a special token's own text when it has none)
    id: int
    trained: bool
    kept: bool  # False past max_seq_length: truncation drops it
    tokens: int = 1  # the tokens it stands for: a picture's tokens show as one piece


@dataclass
class TokenView:
    file: str
    line: int
    split: str
    pieces: list[TokenPiece]
    max_seq_length: int

    @property
    def kept(self) -> int:
        return sum(p.tokens for p in self.pieces if p.kept)

    @property
    def trained(self) -> int:
        # Position 0 is never a target (nothing before it), as in the loss.
        return sum(p.tokens for p in self.pieces[1:] if p.trained and p.kept)

    @property
    def pictures(self) -> list[int]:
        """Each picture's token count, in order."""
        return [p.tokens for p in self.pieces if p.tokens > 1 or p.text.startswith(PICTURE_MARK)]

    @property
    def truncated(self) -> bool:
        return self.kept < sum(p.tokens for p in self.pieces)

    def summary(self) -> str:
        kept = self.kept
        text = (
            f"{self.file}:{self.line} ({self.split}): {kept} tokens, {self.trained} trained "
            f"({self.trained / max(kept, 1):.1%}), {kept - self.trained} masked"
        )
        if self.pictures:
            text += f"; {len(self.pictures)} picture(s): {', '.join(map(str, self.pictures))} tokens, never trained"
        if self.truncated:
            dropped = sum(p.tokens for p in self.pieces) - kept
            text += f"; cut at max_seq_length={self.max_seq_length}, {dropped} tokens dropped"
        return text

    def to_terminal(self, color: bool) -> str:
        """The row with trained tokens highlighted (colours) or in [[ ]] (plain), and the cut marked."""
        out: list[str] = []
        in_trained = False
        cut_mark = f"<<cut: max_seq_length={self.max_seq_length}>>"
        for i, piece in enumerate(self.pieces):
            if not piece.kept and (i == 0 or self.pieces[i - 1].kept):
                if in_trained and not color:
                    out.append("]]")
                    in_trained = False
                out.append(f"{_ANSI_MARK}✂{cut_mark}{_ANSI_RESET}" if color else cut_mark)
            text = piece.text.replace("\n", "↵\n") if color else piece.text
            trained = piece.trained and piece.kept and i > 0
            if color:
                style = _ANSI_CUT if not piece.kept else _ANSI_TRAINED[i % 2] if trained else _ANSI_MASKED
                # Colour each line separately so a newline never carries a background across the terminal.
                out.append("\n".join(f"{style}{part}{_ANSI_RESET}" if part else "" for part in text.split("\n")))
                continue
            if trained != in_trained:
                out.append("[[" if trained else "]]")
                in_trained = trained
            out.append(text)
        if in_trained:
            out.append("]]")
        legend = (
            "green: trained (shades alternate per token), grey: masked"
            if color
            else "[[ ]]: trained tokens; everything else is masked"
        )
        return f"{self.summary()}\n{legend}\n{''.join(out)}"


def find_row(splits: dict[str, RawSplit], line: int) -> tuple[RawSplit, int]:
    """The split holding the row on `line`, and its index there (train first, then valid, then test)."""
    for raw in splits.values():
        if line in raw.lines:
            return raw, raw.lines.index(line)
    raise UserError(
        f"no row on line {line}: the data has rows on lines "
        f"{min(min(r.lines) for r in splits.values() if r.lines)} to "
        f"{max(max(r.lines) for r in splits.values() if r.lines)}; give one of those"
    )


def _piece_text(tokenizer: Any, text: str, prev_hi: int, lo: int, hi: int, token_id: int) -> str:
    if hi > prev_hi:
        return text[prev_hi:hi]  # a token owns the gap before it (offsets may skip spaces)
    if hi > lo:
        return ""  # the rest of a character an earlier token began
    hf = getattr(tokenizer, "_tokenizer", tokenizer)
    return str(hf.convert_ids_to_tokens(token_id))  # a special token added outside the text


def token_view(
    splits: dict[str, RawSplit], line: int, tokenizer: Any, *, max_seq_length: int, mask_prompt: bool
) -> TokenView:
    """The row on `line` as the model sees it, through the trainer's own encoding (a vision model's tokenizer is
    its processor: picture rows show each picture's tokens as one piece with their count)."""
    raw, index = find_row(splits, line)
    if raw.format == VISION.name:
        return _picture_row_view(raw, index, line, tokenizer, max_seq_length, mask_prompt)
    problems: list[str] = []
    rows = list(
        encode_rows(
            [raw.rows[index]],
            raw.format or "text",
            tokenizer,
            mask_prompt,
            on_reject=lambda _, message: problems.append(message),
            keep_text=True,
        )
    )
    if not rows:
        raise UserError(f"{raw.file}:{line}: {problems[0] if problems else 'the row could not be encoded'}")
    row = rows[0][1]
    pieces = []
    prev_hi = 0
    for i, token_id in enumerate(row.ids.tolist()):
        lo, hi = (int(x) for x in row.offsets[i]) if row.offsets is not None else (0, 0)
        pieces.append(
            TokenPiece(
                _piece_text(tokenizer, row.text, prev_hi, lo, hi, token_id),
                token_id,
                bool(row.trained[i]),
                i < max_seq_length,
            )
        )
        prev_hi = max(prev_hi, hi)
    return TokenView(raw.file, line, raw.name, pieces, max_seq_length)


def _picture_row_view(
    raw: RawSplit, index: int, line: int, processor: Any, max_seq_length: int, mask_prompt: bool
) -> TokenView:
    if not hasattr(processor, "image_processor"):
        raise UserError(f"{raw.file}:{line}: the row has pictures; pick a vision-language model to see its tokens")
    problems = Problems()
    one = raw.take(np.array([index]))
    split = encode_vision_split(one, processor, 1 << 30, mask_prompt, problems)  # uncut: the view marks the cut
    if problems.items or not split.rows:
        reason = problems.items[0].message if problems.items else "the row could not be encoded"
        raise UserError(f"{raw.file}:{line}: {reason}")
    ids, trained = split.tokens[0], split.trained[0]
    picture, hf = image_token_id(processor), processor.tokenizer
    pieces: list[TokenPiece] = []
    i = 0
    while i < len(ids):
        if ids[i] == picture:
            end = i
            while end < len(ids) and ids[end] == picture:
                end += 1
            count = end - i
            pieces.append(
                TokenPiece(
                    f"{PICTURE_MARK} picture · {count} tokens", int(picture), False, end <= max_seq_length, count
                )
            )
            i = end
            continue
        pieces.append(TokenPiece(hf.decode([int(ids[i])]), int(ids[i]), bool(trained[i]), i < max_seq_length))
        i += 1
    return TokenView(raw.file, line, raw.name, pieces, max_seq_length)
