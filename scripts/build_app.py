"""Build the app bundle with PyInstaller (`make app`), or reuse a build that is still fresh.

    .venv/bin/python scripts/build_app.py [--force] [--sign "Developer ID Application: NAME (TEAMID)"]
                                          [--macos-minimum 14.0]

A build is fresh when the spec, the package's sources, its resources, the installed packages and the
signing identity are the ones it was built from (a hash kept beside the bundle). Prints where the bundle
is, its size and the build time. On macOS, --sign signs it with the hardened runtime (`make app SIGN=…`)
and checks the signature; --macos-minimum asks for a fixed LSMinimumSystemVersion, which the build refuses
when the installed MLX wheels need a newer macOS (`make app MACOS_MIN=…`).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DIST = ROOT / "dist"
# Beside the bundle, never in it: a file added after PyInstaller signs a macOS bundle breaks its seal.
STAMP = DIST / ".qlora-studio.build-hash"
# The spec reads these (PyInstaller runs it in its own process).
SIGN_ENV = "QLORA_STUDIO_SIGN_IDENTITY"
MINIMUM_ENV = "QLORA_STUDIO_MACOS_MINIMUM"
# What the Linux bundle may weigh on disk (tests/test_bundle.py holds it to this): 270 MB measured with the
# locked PyInstaller 6.22, PySide6 6.11, transformers 5.25 and MLX 0.32 (377 MB before scripts/bundle_trim.py).
MAX_LINUX_MB = 280


def bundle_dir() -> Path:
    """The folder holding the executable: dist/qlora-studio, or the .app's Contents/MacOS."""
    if sys.platform == "darwin":
        return DIST / "QLoRA Studio.app" / "Contents" / "MacOS"
    return DIST / "qlora-studio"


def executable() -> Path:
    return bundle_dir() / "qlora-studio"


def app_bundle() -> Path:
    """What is handed out: the .app on macOS, the folder on Linux."""
    return DIST / "QLoRA Studio.app" if sys.platform == "darwin" else bundle_dir()


def source_hash(sign: str | None = None, macos_minimum: str | None = None) -> str:
    h = hashlib.sha256()
    h.update(f"sign={sign or ''} minimum={macos_minimum or ''}".encode())
    scripts = ROOT / "scripts"
    files = [ROOT / "build_app.spec", ROOT / "pyproject.toml", ROOT / "scripts" / "macos-entitlements.plist"]
    files += [scripts / "macos_plist.py", scripts / "macos_minimum.py", scripts / "bundle_trim.py"]
    files += sorted((ROOT / "qlora_gui").rglob("*.py")) + sorted(
        p for p in (ROOT / "qlora_gui" / "resources").rglob("*") if p.is_file()
    )
    files += [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.png"))  # Help > User guide
    for f in files:
        h.update(str(f.relative_to(ROOT)).encode())
        h.update(f.read_bytes())
    for dist in sorted(f"{d.metadata['Name']}=={d.version}" for d in metadata.distributions()):
        h.update(dist.encode())
    h.update(sys.version.encode())
    return h.hexdigest()


def folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def build(force: bool = False, quiet: bool = False, sign: str | None = None, macos_minimum: str | None = None) -> Path:
    """Build unless a fresh bundle exists; returns the executable."""
    if sign and sys.platform != "darwin":
        raise RuntimeError("--sign (make app SIGN=…) signs a macOS bundle: build on a Mac to sign")
    digest = source_hash(sign, macos_minimum)
    stamp = STAMP
    if not force and executable().is_file() and stamp.is_file() and stamp.read_text() == digest:
        return executable()
    t0 = time.perf_counter()
    env = {k: v for k, v in os.environ.items() if k not in (SIGN_ENV, MINIMUM_ENV)}
    if sign:
        env[SIGN_ENV] = sign
        env["PYINSTALLER_STRICT_BUNDLE_CODESIGN_ERROR"] = "1"  # a signature that fails stops the build
    if macos_minimum:
        env[MINIMUM_ENV] = macos_minimum
    cmd = [sys.executable, "-m", "PyInstaller", "--noconfirm", "--log-level", "WARN", str(ROOT / "build_app.spec")]
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=quiet, text=True)
    if result.returncode != 0:
        tail = (result.stderr or "")[-3000:] if quiet else ""
        raise RuntimeError(f"PyInstaller failed (exit {result.returncode}){': ' + tail if tail else ''}")
    if sign:
        verify_signature(app_bundle())
    stamp.write_text(digest)
    if not quiet:
        top = app_bundle()
        print(f"built {top} in {time.perf_counter() - t0:.0f} s: {folder_size(top) / 1e6:.0f} MB")
    return executable()


def verify_signature(app: Path) -> None:
    """What Gatekeeper checks, before the bundle is handed to notarization."""
    cmd = ["codesign", "--verify", "--deep", "--strict", "--verbose=2", str(app)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{app} is signed but does not verify ({' '.join(cmd)}):\n{result.stderr.strip()}")


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description="Build the QLoRA Studio bundle with PyInstaller.")
    p.add_argument("--force", action="store_true", help="build even when the last build is still fresh")
    p.add_argument("--sign", metavar="IDENTITY", help='macOS: sign with this identity ("Developer ID Application: …")')
    p.add_argument("--macos-minimum", metavar="VERSION", help="macOS: a fixed LSMinimumSystemVersion, if MLX allows it")
    args = p.parse_args(argv)
    try:
        exe = build(force=args.force, sign=args.sign, macos_minimum=args.macos_minimum)
    except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"run it: {exe}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
