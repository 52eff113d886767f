"""Check speed & memory: the measured preflight, run in a child process, its verdict and what to apply."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from ...core.config import TrainConfig
from ...core.memory import GB, memory_budget
from ...core.train.preflight import PreflightResult, memory_fingerprint, preflight_in_child
from ..workers.jobs import FunctionJob, start_job


class PreflightBox(QWidget):
    applied = Signal(object)  # a TrainConfig with the settings that fit
    finished = Signal()

    def __init__(self, config_source: Callable[[], TrainConfig | None], parent: QWidget | None = None):
        super().__init__(parent)
        self.config_source = config_source
        self.job: FunctionJob | None = None
        self.result: PreflightResult | None = None
        self._measured_for: tuple | None = None
        self._config: TrainConfig | None = None
        self.check_button = QPushButton("Check speed && memory")
        self.check_button.setToolTip(
            "Load the model with these settings and run two training steps on the longest rows (nothing is "
            "saved): peak memory, speed and the run's duration, measured. When they do not fit, smaller "
            "settings are tried for real. Runs in a separate process, so running out of memory cannot close the app."
        )
        self.check_button.clicked.connect(self.check)
        self.apply_button = QPushButton("")
        self.apply_button.hide()
        self.apply_button.clicked.connect(self._apply)
        self.text = QLabel("")
        self.text.setWordWrap(True)
        self.text.hide()  # no empty line under the button until there is something to say
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.check_button)
        row.addWidget(self.apply_button)
        row.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(row)
        layout.addWidget(self.text)

    def check(self) -> None:
        cfg = self.config_source()
        if cfg is None or self.job is not None:
            return
        if not cfg.model or not cfg.data:
            self._say("Pick a dataset and a model first.")
            return
        self._config, self.result = cfg, None
        self.check_button.setEnabled(False)
        self.apply_button.hide()
        self._say("Measuring: loading the model and running two steps on the longest rows…")
        self.job = start_job(preflight_in_child, cfg, on_done=self._done, on_failed=self._failed)

    def _say(self, text: str) -> None:
        self.text.setText(text)
        self.text.setVisible(bool(text))

    def measured_peak_gb(self, cfg: TrainConfig) -> float | None:
        """The measured peak memory of exactly these settings; None when unmeasured."""
        result = self.result
        if result is None or self._measured_for != memory_fingerprint(cfg) or not result.trials:
            return None
        return result.trials[0].peak_gb

    def measured_share(self, cfg: TrainConfig) -> float | None:
        """The measured peak of exactly these settings over the memory they may use now; None when unmeasured."""
        peak = self.measured_peak_gb(cfg)
        return peak / (cfg.memory_limit_gb or memory_budget() / GB) if peak is not None else None

    def set_measured(self, result: PreflightResult, cfg: TrainConfig | None) -> None:
        """Keep a measurement as that of these settings (a later change of them makes it stale)."""
        self.result = result
        self._measured_for = memory_fingerprint(cfg) if cfg else None

    def _done(self, result: PreflightResult) -> None:
        self.job = None
        self.set_measured(result, self._config)
        self.check_button.setEnabled(True)
        self._say(result.to_text().replace("\n", "<br>"))
        chosen = result.chosen
        if chosen is not None and not result.fits_as_set:
            self.apply_button.setText(f"Apply: {chosen.settings()}")
            self.apply_button.show()
        self.finished.emit()

    def _failed(self, message: str, details: str) -> None:
        self.job = None
        self.check_button.setEnabled(True)
        self._say(f"⚠ {message}")
        self.text.setToolTip(details)
        self.finished.emit()

    def _apply(self) -> None:
        result, cfg = self.result, self._config
        chosen = result.chosen if result else None
        if result is None or chosen is None or cfg is None:
            return
        self.apply_button.hide()
        # The first trial ran at the settings' own length (or the longest row); only a cut length is applied.
        cut = chosen.max_seq_length < result.trials[0].max_seq_length
        self.applied.emit(
            dataclasses.replace(
                cfg,
                batch_size=chosen.batch_size,
                grad_checkpoint=chosen.grad_checkpoint,
                max_seq_length=chosen.max_seq_length if cut else cfg.max_seq_length,
            )
        )
