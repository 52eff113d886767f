"""How to sample an answer, with the defaults the playground and `qlora-gui generate` share (no MLX import here,
so that a parser's --help can show them)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class SamplingSettings:
    temperature: float = 0.7  # 0 is greedy
    top_p: float = 0.95
    max_tokens: int = 256
    seed: int = 0
