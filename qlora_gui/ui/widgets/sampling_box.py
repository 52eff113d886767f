"""How the playground samples: temperature, top-p, max tokens and seed, with the core's defaults."""

from __future__ import annotations

from PySide6.QtWidgets import QDoubleSpinBox, QFormLayout, QGroupBox, QSpinBox, QWidget

from ...core.inference.sampling import SamplingSettings


class SamplingBox(QGroupBox):
    def __init__(self, parent: QWidget | None = None):
        super().__init__("Sampling (the same for both)", parent)
        default = SamplingSettings()
        self.temperature = QDoubleSpinBox(minimum=0.0, maximum=2.0, singleStep=0.1, decimals=2)
        self.temperature.setValue(default.temperature)
        self.temperature.setToolTip("0 is greedy: always the most likely token.")
        self.top_p = QDoubleSpinBox(minimum=0.05, maximum=1.0, singleStep=0.05, decimals=2)
        self.top_p.setValue(default.top_p)
        self.top_p.setToolTip("Sample only from the most likely tokens that together make up this share.")
        self.max_tokens = QSpinBox(minimum=1, maximum=8192)
        self.max_tokens.setValue(default.max_tokens)
        self.seed = QSpinBox(minimum=0, maximum=2**31 - 1)
        self.seed.setValue(default.seed)
        self.seed.setToolTip("The same seed and settings give the same answers.")
        form = QFormLayout(self)
        form.addRow("Temperature", self.temperature)
        form.addRow("Top-p", self.top_p)
        form.addRow("Max tokens", self.max_tokens)
        form.addRow("Seed", self.seed)

    def settings(self) -> SamplingSettings:
        return SamplingSettings(
            self.temperature.value(), self.top_p.value(), self.max_tokens.value(), self.seed.value()
        )
