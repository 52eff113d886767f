"""One owner per run folder: a trainer holds an OS lock on the folder's lock file while it runs.

The lock is `flock` on `owner.lock`, held by an open file: the system releases it when the owner exits in any
way (a crash, SIGKILL, power loss), so a lock never goes stale. The file names its owner (process, host,
start), for the message a second trainer gets. It is emptied, never deleted, on release: deleting it could let
two trainers lock two different files of the same name.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import UserError
from .run_folder import RunFolder


@dataclass
class Owner:
    pid: int
    host: str
    since: str  # local time the run took the folder
    command: str

    def describe(self) -> str:
        return f"{self.command} (process {self.pid} on {self.host}, since {self.since})"


def _read_owner(fd: int) -> Owner | None:
    os.lseek(fd, 0, os.SEEK_SET)
    try:
        data = json.loads(os.read(fd, 1 << 16).decode("utf-8") or "null")
        return Owner(**data) if isinstance(data, dict) else None
    except (ValueError, TypeError):
        return None


def in_use_message(run_dir: Path, owner: Owner | None) -> str:
    who = owner.describe() if owner else "another process"
    return f"{run_dir} is in use by {who}: one run folder has one trainer. Stop that run, or use another folder"


class RunLock:
    """Held from `acquire` to `release` (or the end of the process)."""

    def __init__(self, run_dir: Path, fd: int, owner: Owner) -> None:
        self.run_dir, self.owner = run_dir, owner
        self._fd: int | None = fd  # None once released

    @classmethod
    def acquire(cls, run_dir: Path, command: str = "a training run") -> RunLock:
        """Take the folder, or raise UserError naming who has it."""
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(RunFolder(run_dir).lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = _read_owner(fd)
            os.close(fd)
            raise UserError(in_use_message(run_dir, other)) from None
        owner = Owner(os.getpid(), socket.gethostname(), time.strftime("%Y-%m-%d %H:%M:%S"), command)
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, json.dumps(asdict(owner)).encode("utf-8"))
        os.fsync(fd)
        return cls(run_dir, fd, owner)

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)
        finally:
            os.close(self._fd)  # closing releases the lock
            self._fd = None


def folder_owner(run_dir: Path) -> Owner | None:
    """Who trains in this folder now; None when nobody does (a crashed owner holds nothing)."""
    path = RunFolder(run_dir).lock
    if not path.is_file():
        return None
    fd = os.open(path, os.O_RDWR)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_owner(fd) or Owner(0, "?", "?", "another process")
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
