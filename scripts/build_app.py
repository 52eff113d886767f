"""Build the app bundle with PyInstaller (`make app`), or reuse a build that is still fresh.

    .venv/bin/python scripts/build_app.py [--force]

A build is fresh when the spec, the package's sources, its resources and the
installed packages are the ones it was built from (a hash stored in the bundle).
Prints where the bundle is, its size and the build time.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DIST = ROOT / "dist"
# Beside the bundle, never in it: a file added after PyInstaller signs a macOS bundle breaks its seal.
STAMP = DIST / ".qlora-studio.build-hash"


def bundle_dir() -> Path:
    """The folder holding the executable: dist/qlora-studio, or the .app's Contents/MacOS."""
    if sys.platform == "darwin":
        return DIST / "QLoRA Studio.app" / "Contents" / "MacOS"
    return DIST / "qlora-studio"


def executable() -> Path:
    return bundle_dir() / "qlora-studio"


def source_hash() -> str:
    h = hashlib.sha256()
    files = [ROOT / "build_app.spec", ROOT / "pyproject.toml", ROOT / "scripts" / "macos_plist.py"]
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


def build(force: bool = False, quiet: bool = False) -> Path:
    """Build unless a fresh bundle exists; returns the executable."""
    digest = source_hash()
    stamp = STAMP
    if not force and executable().is_file() and stamp.is_file() and stamp.read_text() == digest:
        return executable()
    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "PyInstaller", "--noconfirm", "--log-level", "WARN", str(ROOT / "build_app.spec")]
    result = subprocess.run(cmd, cwd=ROOT, capture_output=quiet, text=True)
    if result.returncode != 0:
        tail = (result.stderr or "")[-3000:] if quiet else ""
        raise RuntimeError(f"PyInstaller failed (exit {result.returncode}){': ' + tail if tail else ''}")
    stamp.write_text(digest)
    if not quiet:
        top = DIST / "QLoRA Studio.app" if sys.platform == "darwin" else bundle_dir()
        print(f"built {top} in {time.perf_counter() - t0:.0f} s: {folder_size(top) / 1e6:.0f} MB")
    return executable()


if __name__ == "__main__":
    try:
        exe = build(force="--force" in sys.argv[1:])
    except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    print(f"run it: {exe}")
