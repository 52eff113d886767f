"""Where each assistant turn sits in a chat template's output, found in the text itself.

"Train on completions only" must train every assistant turn and nothing else,
under templates that rewrite, reorder or drop other turns: Mistral prints the
system text inside the last user turn, Qwen3 adds an empty think block to the
final turn only and drops the reasoning of earlier ones, Phi-3 appends
<|endoftext|> when there is no generation prompt. So a rendering of the first
k turns is often not a prefix of the whole row, and masks cannot come from
prefixes.

Instead, for assistant turn k the row is rendered a second time with that
turn's content (and its tool-call names) replaced by a sentinel; the characters
where the two renderings differ are the turn's own text. The trained span then
runs back to where the model starts writing (the end of the template's
generation prompt, which may add text of its own such as "<think>\\n") and on
through the turn's end-of-turn marker. Both are learned once per template from
a probe conversation made of sentinels.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

# Private-use characters: no template trims, escapes or splits them, and no real text holds them.
_SENTINEL = "\ue000{}\ue001"

Render = Callable[[list[dict], bool], str]  # (messages, add_generation_prompt) -> the rendered text


@dataclass(frozen=True)
class TemplateShape:
    """What a template writes around an assistant turn."""

    headers: tuple[str, ...]  # the generation prompt's text after a user turn, longest first
    markers: tuple[str, ...]  # tokens that can end an assistant turn, its own end-of-turn marker first


@dataclass
class RowSpans:
    """Character spans of one rendered row to train on, and what the template did to its assistant turns."""

    spans: list[tuple[int, int]] = field(default_factory=list)
    owners: list[int] = field(default_factory=list)  # the index in `messages` of the turn each span writes
    changed: int = 0  # assistant turns the template dropped or rewrote beyond recognition
    reasoning_dropped: int = 0  # turns whose <think> reasoning the template left out (as Qwen3 does)
    unmarked: int = 0  # turns with no end-of-turn marker after them


def _leading_token(text: str, tokens: Sequence[str]) -> str | None:
    matches = [t for t in tokens if t and text.startswith(t)]
    return max(matches, key=len) if matches else None


def template_shape(render: Render, special_tokens: Sequence[str], eos_tokens: Sequence[str]) -> TemplateShape:
    """Learn the generation prompt's tail and the end-of-turn marker from a conversation of sentinels."""
    user, answer = _SENTINEL.format("user"), _SENTINEL.format("answer")
    try:
        prompt = render([{"role": "user", "content": user}], True)
        full = render([{"role": "user", "content": user}, {"role": "assistant", "content": answer}], False)
    except Exception:  # a template that refuses the probe still gets the EOS tokens as markers
        prompt = full = ""
    header = prompt[prompt.index(user) + len(user) :] if user in prompt else ""
    headers = [header] if header.strip() else []
    # After an earlier assistant or tool turn the user's own closing is absent: also look for the rest.
    opening = _leading_token(header, special_tokens)
    if opening and header[len(opening) :].strip():
        headers.append(header[len(opening) :])
    marker = (
        _leading_token(full[full.index(answer) + len(answer) :].lstrip(), special_tokens) if answer in full else None
    )
    markers = ([marker] if marker else []) + [t for t in eos_tokens if t and t != marker]
    return TemplateShape(tuple(headers), tuple(markers))


def _probe_turn(turn: dict, n: int) -> dict:
    """The turn with its content and tool-call names replaced by sentinels."""
    probe = dict(turn, content=_SENTINEL.format(f"a{n}"))
    calls = turn.get("tool_calls")
    if isinstance(calls, list):
        probe["tool_calls"] = []
        for i, call in enumerate(calls):
            call = dict(call) if isinstance(call, dict) else call
            if isinstance(call, dict) and isinstance(call.get("function"), dict):
                call["function"] = dict(call["function"], name=_SENTINEL.format(f"t{n}.{i}"))
            elif isinstance(call, dict) and "name" in call:
                call["name"] = _SENTINEL.format(f"t{n}.{i}")
            probe["tool_calls"].append(call)
    return probe


def _common_prefix(a: str, b: str, limit: int) -> int:
    """How many leading characters a and b share (at most limit): slices compared in C, halving the range."""
    lo, hi = 0, limit
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[lo:mid] == b[lo:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _common_suffix(a: str, b: str, limit: int) -> int:
    """How many trailing characters a and b share (at most limit)."""
    lo, hi = 0, limit
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[len(a) - mid : len(a) - lo] == b[len(b) - mid : len(b) - lo]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _differing_region(text: str, probed: str) -> tuple[int, int, str]:
    """[a, b) in `text` and the probe's own differing text: everything outside them is equal in both."""
    limit = min(len(text), len(probed))
    a = _common_prefix(text, probed, limit)
    s = _common_suffix(text, probed, limit - a)
    return a, len(text) - s, probed[a : len(probed) - s]


def _sentinels(turn: dict, n: int) -> list[str]:
    """What the probe of this turn must show: its tool-call names, or else its content."""
    calls = turn.get("tool_calls")
    if isinstance(calls, list) and calls:
        return [_SENTINEL.format(f"t{n}.{i}") for i in range(len(calls))]
    return [_SENTINEL.format(f"a{n}")]


def _only_this_turn(probed_part: str, expected: list[str], shape: TemplateShape) -> bool:
    """The probe differs from the row by this turn alone: it shows the turn (its tool calls, or else its
    content), and no turn boundary (a header or an end marker) lies around it. A template that drops the
    turn's tool calls fails this, and so does one that renders anything else differently the second time
    (a date that changed at midnight, a random id): such a turn is not trained."""
    if not all(s in probed_part for s in expected):
        return False
    first, last = probed_part.find("\ue000"), probed_part.rfind("\ue001")
    around = probed_part[:first] + "\n" + probed_part[last + 1 :]
    return not any(h and h in around for h in (*shape.headers, *shape.markers))


def _normalized(s: str) -> str:
    return " ".join(s.split())


def _recognized(content: Any, rendered: str) -> str:
    """'yes', 'reasoning' (only the answer after </think> is there) or 'no'."""
    text = content.strip() if isinstance(content, str) else ""
    if not text or text in rendered or _normalized(text) in _normalized(rendered):
        return "yes"
    if "</think>" in text:
        answer = text.split("</think>")[-1].strip()
        if not answer or _normalized(answer) in _normalized(rendered):
            return "reasoning"
    return "no"


def left_out_roles(messages: list[dict], text: str) -> list[str]:
    """Roles of the non-assistant turns whose text the template left out (Mistral drops the system turn
    of a row that ends with an answer)."""
    flat: str | None = None
    out = []
    for m in messages:
        content = m.get("content")
        if m.get("role") == "assistant" or not isinstance(content, str) or not content.strip() or content in text:
            continue  # text found as it is is found in the normalized text too
        flat = _normalized(text) if flat is None else flat
        if _normalized(content) not in flat:
            out.append(m.get("role", ""))
    return out


def assistant_turns(messages: list[dict]) -> list[int]:
    """The index in `messages` of each assistant turn."""
    return [i for i, m in enumerate(messages) if m.get("role") == "assistant"]


def probe_conversations(messages: list[dict]) -> list[list[dict]]:
    """For each assistant turn, the conversation with that turn replaced by its probe: rendering these (in
    one batch for many rows) and passing the texts to `spans_from_probes` gives the row's spans."""
    return [
        messages[:k] + [_probe_turn(messages[k], n)] + messages[k + 1 :]
        for n, k in enumerate(assistant_turns(messages))
    ]


def assistant_spans(render: Render, messages: list[dict], text: str, shape: TemplateShape) -> RowSpans:
    """The spans of `text` (the rendering of `messages`) that every assistant turn writes, markers included."""
    probes = [render(probe, False) for probe in probe_conversations(messages)]
    return spans_from_probes(messages, text, shape, probes)


def spans_from_probes(messages: list[dict], text: str, shape: TemplateShape, probes: list[str]) -> RowSpans:
    """The row's spans from the renderings of its `probe_conversations`, in their order."""
    out = RowSpans()
    floor = 0
    for n, (k, probed) in enumerate(zip(assistant_turns(messages), probes, strict=True)):
        a, b, probed_part = _differing_region(text, probed)
        if a < floor or not _only_this_turn(
            probed_part, _sentinels(messages[k], n), shape
        ):  # the template printed nothing of this turn
            out.changed += 1
            continue
        start = a
        for header in shape.headers:
            at = text.rfind(header, floor, a)
            if at >= 0:
                start = at + len(header)
                break
        found = [(text.find(m, b), m) for m in shape.markers]
        found = [(at, m) for at, m in found if at >= 0]
        end = b
        if found:
            at, marker = min(found)
            # A marker past the next turn's opening belongs to that turn: this one has none.
            if not any(h and h in text[b:at] for h in shape.headers):
                end = at + len(marker)
        if end == b:
            out.unmarked += 1
        seen = _recognized(messages[k].get("content"), text[start:end])
        out.changed += seen == "no"
        out.reasoning_dropped += seen == "reasoning"
        out.spans.append((start, end))
        out.owners.append(k)
        floor = end
    return out
