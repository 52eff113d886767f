"""The oldest macOS the bundle runs on, read from the MLX that goes into it (Info.plist's LSMinimumSystemVersion).

MLX's Metal library comes in the `mlx-metal` package, published as one wheel per macOS, tagged macosx_14_0,
macosx_15_0 and macosx_26_0 (and `mlx` itself, whose extension is built the same way). pip installs the newest
one the build machine runs, so a bundle built on macOS 15 carries a libmlx that does not load on macOS 14: the
minimum must follow the installed wheels, never a fixed number. A tag can understate what the library needs:
pip only knows macosx_N_0 for macOS 11 and later, and since 0.32.0 the macOS-26 wheel's libmlx is built for
26.2 (ml-explore/mlx#4525). So the minimum is the highest of the wheels' tags (with that known exception) and,
where the files are at hand, their libraries' own (Mach-O LC_BUILD_VERSION). Pure functions, checked on any
platform by tests/test_macos_plist.py; the spec calls installed_minimum() on macOS.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from fnmatch import fnmatch
from importlib import metadata
from pathlib import Path

# MLX's two wheels with a per-macOS build, and the native file of each whose Mach-O header is read.
PACKAGES = {"mlx-metal": "mlx/lib/libmlx.dylib", "mlx": "mlx/core.*.so"}
# Wheel tag -> (the first version built for a later macOS, that macOS); MLX's release builds both wheels alike.
BUILT_FOR_LATER = {(26, 0): ((0, 32, 0), "26.2")}

_MACOS_TAG = re.compile(r"^macosx_(\d+)_(\d+)_\w+$")
_MH_MAGIC_64 = 0xFEEDFACF
_LC_VERSION_MIN_MACOSX = 0x24
_LC_BUILD_VERSION = 0x32
_PLATFORM_MACOS = 1


@dataclass(frozen=True)
class Wheel:
    """One installed wheel: its name, version, platform tags and the first bytes of its native library."""

    name: str
    version: str
    tags: tuple[str, ...]
    header: bytes | None = None


def version_tuple(text: str) -> tuple[int, ...]:
    """The numbers of a version: "26.2" -> (26, 2); a suffix such as "rc1" ends it."""
    parts = []
    for part in text.split("."):
        digits = re.match(r"\d+", part)
        if not digits:
            break
        parts.append(int(digits.group()))
    return tuple(parts)


def _newer(a: str, b: str) -> str:
    return a if version_tuple(a) >= version_tuple(b) else b


def minimum_from_tags(tags: Iterable[str], package_version: str = "") -> str:
    """The macOS a wheel with these tags ("py3-none-macosx_15_0_arm64") runs on, its known exceptions applied."""
    found: list[tuple[int, int]] = []
    for tag in tags:
        for platform in tag.rsplit("-", 1)[-1].split("."):  # a compressed tag lists several platforms
            match = _MACOS_TAG.match(platform)
            if match:
                found.append((int(match.group(1)), int(match.group(2))))
    if not found:
        raise ValueError(f"no macOS platform tag among {list(tags)}: this is not a macOS wheel")
    lowest = min(found)  # pip installs a wheel wherever any one of its tags fits
    since, built_for = BUILT_FOR_LATER.get(lowest, ((), ""))
    if built_for and version_tuple(package_version) >= since:
        return built_for
    return f"{lowest[0]}.{lowest[1]}"


def minimum_from_macho(header: bytes) -> str | None:
    """The macOS a 64-bit Mach-O file (its first bytes, load commands included) was built for; None when
    the bytes are not one or name no macOS (a universal file, say)."""
    if len(header) < 32 or struct.unpack_from("<I", header)[0] != _MH_MAGIC_64:
        return None
    ncmds = struct.unpack_from("<I", header, 16)[0]
    offset = 32
    for _ in range(ncmds):
        if offset + 16 > len(header):
            return None
        cmd, size = struct.unpack_from("<II", header, offset)
        if cmd == _LC_BUILD_VERSION and struct.unpack_from("<I", header, offset + 8)[0] == _PLATFORM_MACOS:
            return _decode(struct.unpack_from("<I", header, offset + 12)[0])
        if cmd == _LC_VERSION_MIN_MACOSX:
            return _decode(struct.unpack_from("<I", header, offset + 8)[0])
        if size < 8:
            return None  # a damaged file: stop rather than loop
        offset += size
    return None


def _decode(packed: int) -> str:
    """Mach-O packs X.Y.Z as xxxx.yy.zz in 32 bits."""
    major, minor, patch = packed >> 16, (packed >> 8) & 0xFF, packed & 0xFF
    return f"{major}.{minor}" + (f".{patch}" if patch else "")


def wheel_minimum(wheel: Wheel) -> str:
    """What one installed wheel needs: its tag, with the known exceptions, or its binary when that needs more."""
    needed = minimum_from_tags(wheel.tags, wheel.version)
    from_binary = minimum_from_macho(wheel.header) if wheel.header else None
    return _newer(needed, from_binary) if from_binary else needed


def choose_minimum(wheels: list[Wheel], asked: str | None = None) -> str:
    """LSMinimumSystemVersion for a bundle carrying these wheels. `asked` (a fixed minimum) is kept when the
    wheels allow it, and refused, naming the wheel that needs a newer macOS and what to do, when they do not."""
    if asked is not None and not version_tuple(asked):
        raise ValueError(f"macOS minimum {asked!r} is not a version: give one such as 14.0")
    if not wheels:
        if asked is not None:
            return asked  # MLX built from source: whoever built it knows what it needs
        raise ValueError(
            f"neither {' nor '.join(PACKAGES)} is installed as a macOS wheel, so the macOS the bundle needs is "
            "unknown: on a Mac `pip install mlx` brings both (make app does), or give the minimum (MACOS_MIN=…)"
        )
    needs = {wheel: wheel_minimum(wheel) for wheel in wheels}
    needed = "0"
    for value in needs.values():
        needed = _newer(value, needed)
    if asked is None:
        return needed
    if version_tuple(asked) >= version_tuple(needed):
        return asked
    major = version_tuple(asked)[0]
    blocking = [w for w, value in needs.items() if version_tuple(value) > version_tuple(asked)]
    names = " ".join(f"{w.name}=={w.version}" for w in blocking)
    said = "; ".join(f"{w.name} {w.version} ({', '.join(w.tags)}) needs macOS {needs[w]}" for w in blocking)
    raise ValueError(
        f"macOS {asked} was asked for as the minimum, but the installed {said}. Install the macOS-{major} wheels "
        f"(pip download --no-deps --only-binary=:all: --platform macosx_{major}_0_arm64 -d wheels {names} && "
        "pip install --no-deps --force-reinstall wheels/*.whl) or leave the minimum out to let the wheels decide"
    )


def installed_wheels() -> list[Wheel]:
    """MLX's wheels installed here, with the first bytes of their native library."""
    wheels = []
    for name, pattern in PACKAGES.items():
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        text = dist.read_text("WHEEL") or ""
        tags = tuple(line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("Tag:"))
        if not any("macosx_" in tag for tag in tags):
            continue  # built from source, or another platform's wheel
        header = None
        for file in dist.files or []:
            path = Path(str(dist.locate_file(file)))
            if fnmatch(str(file), pattern) and path.is_file():
                with path.open("rb") as f:
                    header = f.read(1 << 16)  # the load commands come first and take a few kilobytes
                break
        wheels.append(Wheel(name, dist.version, tags, header))
    return wheels


def installed_minimum(asked: str | None = None) -> str:
    """The minimum for the MLX installed here (the spec calls this on macOS)."""
    return choose_minimum(installed_wheels(), asked)
