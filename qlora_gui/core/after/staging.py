"""Write an export under a hidden staging name and rename it into place at the end.

A failure, a full disk or a crash never leaves a file or folder that looks finished, and
an existing one is never overwritten. A full disk is said in words, with the place.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from ..errors import UserError


def refuse_existing(path: Path) -> None:
    if path.is_dir() and any(path.iterdir()):
        raise UserError(f"{path} already exists and is not empty; give a new folder, so nothing is overwritten")
    if path.exists() and not path.is_dir():
        raise UserError(f"{path} already exists; give a new name, so nothing is overwritten")


def disk_full_message(path: Path, needed: int | None = None) -> str:
    try:
        free = shutil.disk_usage(path if path.exists() else path.parent).free
        room = f" ({free / 1e9:.2f} GB free"
        room += f", about {needed / 1e9:.2f} GB needed)" if needed else ")"
    except OSError:
        room = ""
    return f"the disk is full: {path} could not be written{room}; free some space or pick another disk"


@contextlib.contextmanager
def staged(final: Path, *, folder: bool, needed: int | None = None) -> Iterator[Path]:
    """Yield a staging path next to `final`; rename it to `final` when the block ends without error."""
    final = Path(final)
    refuse_existing(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = final.parent / f".{final.name}.partial-{os.getpid()}"
    _remove(staging)
    if folder:
        staging.mkdir()
    try:
        yield staging
        if final.is_dir():
            final.rmdir()  # empty, checked above
        os.replace(staging, final)
    except OSError as e:
        _remove(staging)
        if e.errno == errno.ENOSPC:
            raise UserError(disk_full_message(final, needed)) from e
        raise
    except BaseException:
        _remove(staging)
        raise


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
