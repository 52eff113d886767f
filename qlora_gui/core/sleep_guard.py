"""Keep the computer from falling asleep while a run trains: idle sleep is held off from a run's start to its end.

A run takes hours and nobody touches the computer meanwhile, which is exactly when it goes to sleep and the
run stops. The lock is a child process held for as long as the run trains:

- macOS: `caffeinate -i -w PID` holds an idle-sleep assertion while it runs, and `-w` ends it with the app's
  process, even when the app crashes.
- Linux: `systemd-inhibit` takes a logind lock on idle handling and sleep for as long as the command it runs:
  `cat` reading a pipe from the app, so the lock also goes when the app dies (the pipe closes). Closing a
  laptop's lid still suspends it (logind ignores locks for the lid unless configured otherwise).
- Elsewhere, or without these commands, nothing is held and training runs as before.

The display may still sleep; only the system is kept awake. The lid, the power menu and a low battery win.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from typing import IO, Protocol

APP = "QLoRA Studio"


class Process(Protocol):
    """What the guard needs of the process it starts (a subprocess.Popen, or a test's fake)."""

    stdin: IO[bytes] | None

    def terminate(self) -> None: ...
    def wait(self, timeout: float | None = None) -> int: ...


Runner = Callable[[list[str]], Process]
Which = Callable[[str], str | None]


def spawn(argv: list[str]) -> Process:
    """Start the command with a pipe for its input (systemd-inhibit's `cat` waits on it) and no output."""
    return subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def hold_command(
    reason: str, platform: str = sys.platform, pid: int | None = None, which: Which = shutil.which
) -> list[str] | None:
    """The command that holds off idle sleep for as long as it runs, or None where there is none."""
    if platform == "darwin":
        caffeinate = which("caffeinate")
        return [caffeinate, "-i", "-w", str(os.getpid() if pid is None else pid)] if caffeinate else None
    if platform.startswith("linux"):
        inhibit, cat = which("systemd-inhibit"), which("cat")
        if inhibit and cat:
            return [inhibit, "--what=idle:sleep", "--mode=block", f"--who={APP}", f"--why={reason}", cat]
    return None


class SleepGuard:
    """hold() at the start of a run, release() at its end (finished, stopped or failed); both may repeat."""

    def __init__(self, runner: Runner = spawn, command: Callable[[str], list[str] | None] = hold_command):
        self._runner, self._command = runner, command
        self._process: Process | None = None

    @property
    def held(self) -> bool:
        return self._process is not None

    def hold(self, reason: str) -> bool:
        """Hold off idle sleep; False where this platform has no way to (training goes on regardless)."""
        if self._process is not None:
            return True
        argv = self._command(reason)
        if argv is None:
            return False
        try:
            self._process = self._runner(argv)
        except OSError:
            return False  # the command went missing or cannot start: the computer may sleep, as before
        return True

    def release(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.stdin is not None:
            process.stdin.close()  # Linux: `cat` reaches the end of its input and systemd-inhibit lets go
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass  # it ends with the app at the latest (-w PID, or the closed pipe)
