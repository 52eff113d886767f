"""The macOS bundle's Info.plist and its minimum macOS: checked here on any platform, since the app is built on
a Mac only there."""

from __future__ import annotations

import plistlib
import struct
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from macos_minimum import Wheel, choose_minimum, installed_wheels, minimum_from_macho, minimum_from_tags  # noqa: E402
from macos_plist import JSONL_TYPE, info_plist  # noqa: E402

from qlora_gui.core.data.intake import DATA_SUFFIXES  # noqa: E402


def test_finder_and_the_dock_hand_the_app_every_data_file_and_folder_it_opens():
    plist = info_plist("QLoRA Studio", "1.2.3", "15.0")
    documents = plist["CFBundleDocumentTypes"]
    extensions = {e for d in documents for e in d.get("CFBundleTypeExtensions", [])}
    assert extensions == {s.lstrip(".") for s in DATA_SUFFIXES}  # what the data panel reads, no more
    content = {t for d in documents for t in d["LSItemContentTypes"]}
    assert {"public.folder", "public.json", JSONL_TYPE} <= content
    declared = {t["UTTypeIdentifier"]: t for t in plist["UTImportedTypeDeclarations"]}
    assert declared[JSONL_TYPE]["UTTypeConformsTo"] == ["public.plain-text"]  # Quick Look previews it
    assert all(d["LSHandlerRank"] == "Alternate" for d in documents)  # never takes .json from an editor
    assert plist["CFBundleShortVersionString"] == "1.2.3" and plist["LSMinimumSystemVersion"] == "15.0"
    assert plistlib.loads(plistlib.dumps(plist)) == plist  # a valid property list


def macho(minos: str, command: int = 0x32) -> bytes:
    """The start of an arm64 dylib: a segment command, then the one naming the macOS it was built for."""
    major, minor = (int(x) for x in minos.split("."))
    packed = major << 16 | minor << 8
    segment = struct.pack("<II", 0x19, 72) + bytes(64)
    if command == 0x32:  # LC_BUILD_VERSION: platform, minos, sdk, ntools
        version = struct.pack("<IIIIII", 0x32, 24, 1, packed, packed, 0)
    else:  # LC_VERSION_MIN_MACOSX: version, sdk
        version = struct.pack("<IIII", 0x24, 16, packed, packed)
    commands = segment + version
    return struct.pack("<IiiIIIII", 0xFEEDFACF, 0x0100000C, 0, 6, 2, len(commands), 0, 0) + commands


def metal(version: str, macos: int, header: bytes | None = None) -> Wheel:
    return Wheel("mlx-metal", version, (f"py3-none-macosx_{macos}_0_arm64",), header)


def test_the_minimum_macos_follows_the_installed_mlx_wheel():
    assert minimum_from_tags(["py3-none-macosx_14_0_arm64"]) == "14.0"
    assert minimum_from_tags(["cp312-cp312-macosx_15_0_arm64"]) == "15.0"
    # The macOS-26 wheel's libmlx is built for 26.2 since 0.32.0 (its tag cannot say so); 0.31's for 26.0.
    assert minimum_from_tags(["py3-none-macosx_26_0_arm64"], "0.32.4") == "26.2"
    assert minimum_from_tags(["py3-none-macosx_26_0_arm64"], "0.31.2") == "26.0"
    assert minimum_from_tags(["py3-none-macosx_15_0_arm64.macosx_14_0_arm64"]) == "14.0"  # a compressed tag
    with pytest.raises(ValueError, match="not a macOS wheel"):
        minimum_from_tags(["py3-none-manylinux_2_35_x86_64"])
    assert choose_minimum([metal("0.32.4", 15)]) == "15.0"
    assert choose_minimum([metal("0.32.4", 26), Wheel("mlx", "0.32.4", ("cp312-cp312-macosx_26_0_arm64",))]) == "26.2"


def test_the_library_itself_can_ask_for_more_than_its_tag():
    assert minimum_from_macho(macho("26.2")) == "26.2"
    assert minimum_from_macho(macho("14.5", command=0x24)) == "14.5"
    assert minimum_from_macho(b"\x7fELF" + bytes(60)) is None  # not Mach-O: the tag decides
    assert choose_minimum([metal("0.40.0", 15, macho("15.4"))]) == "15.4"
    assert choose_minimum([metal("0.40.0", 15, macho("14.0"))]) == "15.0"


def test_a_fixed_minimum_is_kept_when_the_wheels_allow_it_and_refused_naming_them_when_not():
    assert choose_minimum([metal("0.32.4", 14)], asked="15.0") == "15.0"
    assert choose_minimum([metal("0.32.4", 14)], asked="14.0") == "14.0"
    with pytest.raises(ValueError) as refused:
        choose_minimum([metal("0.32.4", 15)], asked="14.0")
    said = str(refused.value)
    assert (
        "macOS 14.0 was asked for" in said and "mlx-metal 0.32.4 (py3-none-macosx_15_0_arm64) needs macOS 15.0" in said
    )
    assert "--platform macosx_14_0_arm64" in said and "mlx-metal==0.32.4" in said  # what to do about it
    with pytest.raises(ValueError, match="not a version"):
        choose_minimum([metal("0.32.4", 14)], asked="sonoma")
    with pytest.raises(ValueError, match="pip install mlx"):
        choose_minimum([])
    assert choose_minimum([], asked="15.0") == "15.0"  # MLX built from source: the builder says


def test_a_non_macos_install_has_no_wheel_to_read():
    if sys.platform == "darwin":
        pytest.skip("reads the real mlx-metal wheel on a Mac (the bundle test checks the built Info.plist)")
    assert installed_wheels() == []  # Linux wheels carry no macOS tag
