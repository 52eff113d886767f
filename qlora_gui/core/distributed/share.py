"""Copying what a run needs to the hosts reached over ssh, at the same paths: model and data (`--share`), and the
checkpoint a run resumes from. rsync over ssh copies only what differs, so a second share of a large model that
is already there costs a comparison, not a copy.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable
from pathlib import Path

from .checks import SSH, Runner, SystemRunner
from .hostfile import Machines

COPY_TIMEOUT = 6 * 3600.0  # a large model over Ethernet takes a while; the run waits for it anyway


def rsync_command(path: Path, host: str) -> list[str]:
    """rsync of a file, or of a folder's content, to the same path on `host` (deleting what is not here)."""
    source = f"{path}/" if path.is_dir() else str(path)
    return ["rsync", "-a", "--delete", "-e", shlex.join(SSH), source, f"{host}:{shlex.quote(str(path))}"]


def share_paths(
    machines: Machines,
    paths: list[str],
    runner: Runner | None = None,
    say: Callable[[str], None] = lambda _: None,
) -> list[str]:
    """Copy each path to every host reached over ssh; the problems, each naming the host and the fix (none: [])."""
    runner = runner or SystemRunner()
    # rsync 3.2.4+ protects arguments itself; the quoting above is for the remote shell, as older ones expect.
    os.environ.setdefault("RSYNC_OLD_ARGS", "1")
    problems = []
    for host in machines.remote:
        for path in map(Path, paths):
            say(f"copying {path} to {host.ssh}…")
            made = runner.on(host, ["mkdir", "-p", str(path.parent if path.is_file() else path)], 60.0)
            if made.returncode != 0:
                problems.append(
                    f"{host.ssh}: cannot create {path.parent} there ({made.last_error_line()}); the same path must "
                    "be writable on every host: create it there, or keep the model and data under a path every "
                    "host has"
                )
                continue
            copied = runner.here(rsync_command(path, host.ssh), COPY_TIMEOUT)
            if copied.returncode != 0:
                problems.append(
                    f"{host.ssh}: copying {path} failed ({copied.last_error_line()}); check that rsync is installed "
                    f"on both machines and that `ssh {host.ssh} true` works without a password"
                )
    return problems
