"""What the playground's worker tells the playground: small dataclasses of plain values.

Two core types travel as they are beside these: a PromptSample (core.samples)
picked from the run's validation rows, and each GenerationUpdate
(core.generation) of a streamed answer.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ModelLoaded:
    label: str  # the run and step of the adapter
    model: str  # the base model's folder
    uses_template: bool  # the run trained on templated rows
    random_weights: bool  # the demo base: both sides answer with noise
    samples: int  # validation rows to sample prompts from
    samples_note: str  # why there are none, when there are none
    vision: bool = False  # a vision-language model: prompts may come with a picture


@dataclass
class ModelUnloaded:
    """The model's memory went back (training is about to need it)."""


@dataclass
class PromptShown:
    text: str  # the prompt as the model sees it
    note: str  # which template made it


@dataclass
class CommandFailed:
    command: str  # "load", "generate", "sample"...
    message: str
    details: str = ""  # a traceback; empty for a mistake the message explains


@dataclass
class Idle:
    """A load, unload or generate has ended: the worker is free for the next."""
