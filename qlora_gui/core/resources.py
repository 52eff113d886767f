"""Find the app's own files, from a checkout and from a PyInstaller bundle alike."""

from __future__ import annotations

import sys
from pathlib import Path


def resources_dir() -> Path:
    bundle = getattr(sys, "_MEIPASS", None)
    if bundle:
        return Path(bundle) / "resources"
    return Path(__file__).resolve().parents[2] / "resources"


def user_guide_path() -> Path:
    """The README (Help > User guide), with its screenshots beside it in docs/."""
    bundle = getattr(sys, "_MEIPASS", None)
    return Path(bundle) / "guide" / "README.md" if bundle else Path(__file__).resolve().parents[2] / "README.md"


def resource_path(*parts: str) -> Path:
    return resources_dir().joinpath(*parts)


def sample_data_path() -> Path:
    """The small prompt/completion dataset that ships with the app."""
    return resource_path("sample_data", "sql_completions.jsonl")
