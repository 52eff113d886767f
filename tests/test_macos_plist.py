"""The macOS bundle's Info.plist: checked here on any platform, since the app is built on a Mac only there."""

from __future__ import annotations

import plistlib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from macos_plist import JSONL_TYPE, info_plist  # noqa: E402

from qlora_gui.core.data.intake import DATA_SUFFIXES  # noqa: E402


def test_finder_and_the_dock_hand_the_app_every_data_file_and_folder_it_opens():
    plist = info_plist("QLoRA Studio", "1.2.3")
    documents = plist["CFBundleDocumentTypes"]
    extensions = {e for d in documents for e in d.get("CFBundleTypeExtensions", [])}
    assert extensions == {s.lstrip(".") for s in DATA_SUFFIXES}  # what the data panel reads, no more
    content = {t for d in documents for t in d["LSItemContentTypes"]}
    assert {"public.folder", "public.json", JSONL_TYPE} <= content
    declared = {t["UTTypeIdentifier"]: t for t in plist["UTImportedTypeDeclarations"]}
    assert declared[JSONL_TYPE]["UTTypeConformsTo"] == ["public.plain-text"]  # Quick Look previews it
    assert all(d["LSHandlerRank"] == "Alternate" for d in documents)  # never takes .json from an editor
    assert plist["CFBundleShortVersionString"] == "1.2.3" and plist["LSMinimumSystemVersion"] == "14.0"
    assert plistlib.loads(plistlib.dumps(plist)) == plist  # a valid property list
