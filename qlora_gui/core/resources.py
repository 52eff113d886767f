"""Find the app's own files, from a checkout, an installed package and a PyInstaller bundle alike.

The resources live inside the package (`qlora_gui/resources/`), so `pip install` carries them; in a bundle
the spec puts them at the same place beside the frozen modules' `__file__`.
"""

from __future__ import annotations

import sys
from email.message import Message
from importlib import metadata
from pathlib import Path
from typing import cast

PACKAGE_DIR = Path(__file__).resolve().parents[1]
DISTRIBUTION = "qlora-gui"


def resources_dir() -> Path:
    return PACKAGE_DIR / "resources"


def resource_path(*parts: str) -> Path:
    return resources_dir().joinpath(*parts)


def sample_data_path() -> Path:
    """The small prompt/completion dataset that ships with the app."""
    return resource_path("sample_data", "sql_completions.jsonl")


def sample_preferences_path() -> Path:
    """The same questions as preference pairs (the right SQL chosen, a plausible wrong one rejected), for DPO/ORPO."""
    return resource_path("sample_data", "sql_preferences.jsonl")


def sample_prompts_path() -> Path:
    """The same questions as GRPO prompts, each with its SQL as the reference answer the built-in rewards read."""
    return resource_path("sample_data", "sql_prompts.jsonl")


def user_guide_path() -> Path:
    """The README (Help > User guide), with its screenshots beside it in docs/: in a checkout and in a bundle."""
    bundle = getattr(sys, "_MEIPASS", None)
    if bundle:
        return Path(bundle) / "guide" / "README.md"
    # Only a checkout has our README beside the package; site-packages may hold some other package's.
    checkout = (PACKAGE_DIR.parent / "pyproject.toml").is_file()
    return PACKAGE_DIR.parent / ("README.md" if checkout else "README.md.not-installed")


def user_guide_text() -> tuple[str, Path | None]:
    """The guide's Markdown and the folder its images are relative to. An installed package has no README
    file, but its metadata carries the same text (pyproject's `readme`), without the screenshots."""
    path = user_guide_path()
    try:
        return path.read_text(encoding="utf-8"), path.parent
    except OSError:
        pass
    try:
        # At runtime the metadata is an email Message; the long description is its (text) payload.
        payload = cast(Message, metadata.metadata(DISTRIBUTION)).get_payload()
    except metadata.PackageNotFoundError:
        payload = None
    text = payload if isinstance(payload, str) else None
    return (text or f"The user guide is not installed here (looked for {path})."), None
