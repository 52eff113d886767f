"""Bad micro-batches: each is skipped with a warning; too many in a row and the run stops with what to do."""

from __future__ import annotations

from ..errors import TrainingError
from .step import StepResult


class Diverged(TrainingError):
    """Too many bad micro-batches in a row; the message says what to do."""


class DivergenceGuard:
    """Counts micro-batches in a row whose loss or gradient was not finite, or whose loss was absurd."""

    def __init__(self, max_bad_in_a_row: int, learning_rate: float):
        self.max_bad_in_a_row, self.learning_rate = max_bad_in_a_row, learning_rate
        self.bad_in_a_row = 0

    def check(self, result: StepResult, step: int) -> list[str]:
        """The warnings for this step's skipped micro-batches; TrainingError once too many came in a row."""
        warnings: list[str] = []
        for micro in result.micro:
            if micro.ok:
                self.bad_in_a_row = 0 if micro.tokens else self.bad_in_a_row  # an empty micro-batch says nothing
                continue
            self.bad_in_a_row += 1
            warnings.append(f"step {step}: skipped a micro-batch because its {micro.reason}")
            if self.bad_in_a_row >= self.max_bad_in_a_row:
                raise Diverged(
                    f"training diverged: {self.bad_in_a_row} bad micro-batches in a row at step {step}. Lower the "
                    f"learning rate (now {self.learning_rate:g}) and resume from the last checkpoint, which is intact"
                )
        return warnings
