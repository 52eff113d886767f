"""The macOS bundle's Info.plist entries, in one function the spec calls and the tests check on any platform.

Finder and the Dock hand the app what these document types cover: JSON Lines and JSON files, and folders
(a data folder with train/valid/test files); they arrive as QFileOpenEvent (ui/app.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from qlora_gui.core.data.intake import DATA_SUFFIXES  # noqa: E402

JSONL_TYPE = "org.jsonlines.jsonl"  # .jsonl has no system type, so the bundle declares one
CONTENT_TYPES = {".jsonl": JSONL_TYPE, ".json": "public.json"}


def info_plist(app_name: str, version: str, minimum_macos: str) -> dict:
    """The entries; `minimum_macos` comes from the MLX wheels that go into the bundle (macos_minimum.py)."""
    documents = [
        {
            "CFBundleTypeName": f"Training data ({suffix})",
            "CFBundleTypeRole": "Viewer",
            "LSHandlerRank": "Alternate",
            "CFBundleTypeExtensions": [suffix.lstrip(".")],
            "LSItemContentTypes": [CONTENT_TYPES[suffix]],
        }
        for suffix in DATA_SUFFIXES
    ]
    documents.append(
        {
            "CFBundleTypeName": "Training data folder",
            "CFBundleTypeRole": "Viewer",
            "LSHandlerRank": "Alternate",
            "LSItemContentTypes": ["public.folder"],
        }
    )
    return {
        "CFBundleName": app_name,
        "CFBundleDisplayName": app_name,
        "CFBundleShortVersionString": version,
        "CFBundleVersion": version,
        "NSHighResolutionCapable": True,
        "LSMinimumSystemVersion": minimum_macos,  # Finder refuses to start it on an older macOS, with a clear message
        "LSAppNapIsDisabled": True,  # a long run in the background must not be throttled
        "NSRequiresAquaSystemAppearance": False,  # follow the system's dark mode
        "UTImportedTypeDeclarations": [
            {
                "UTTypeIdentifier": JSONL_TYPE,
                "UTTypeDescription": "JSON Lines",
                "UTTypeConformsTo": ["public.plain-text"],  # Quick Look shows it as text
                "UTTypeTagSpecification": {"public.filename-extension": ["jsonl"]},
            }
        ],
        "CFBundleDocumentTypes": documents,
    }
