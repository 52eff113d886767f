"""What went wrong when a rank of a run on several machines ended early, in words that name the rank, its host,
what happened, and the checkpoint to resume from.

mlx.launch ends the other ranks as soon as one exits with an error, and says which one in a line of its own
("Node with rank 1 exited with code -9"). A rank other than 0 that fails says why on its standard error
("[rank 1 on mac-2] error: ..."): only rank 0 reports events.
"""

from __future__ import annotations

import re
import signal
from dataclasses import dataclass
from pathlib import Path

from ..runs import checkpoints as ckpt
from .hostfile import Machines

ANSI = re.compile(r"\x1b\[[0-9;]*m")
NODE_ENDED = re.compile(r"Node with rank (\d+) (?:exited with code (-?\d+)|was killed)")
RANK_ERROR = re.compile(r"^\[rank (\d+) on ([^\]]*)\] error: (.*)$")


@dataclass
class RankEnd:
    rank: int
    code: int | None  # None: the launcher killed it
    order: int  # when the launcher saw it, among the others


def launcher_line(line: str) -> RankEnd | None:
    """A rank's end, when the line is mlx.launch's own word on it."""
    found = NODE_ENDED.search(ANSI.sub("", line))
    if not found:
        return None
    return RankEnd(int(found[1]), int(found[2]) if found[2] is not None else None, 0)


def rank_error(line: str) -> tuple[int, str] | None:
    found = RANK_ERROR.match(ANSI.sub("", line).strip())
    return (int(found[1]), found[3]) if found else None


def first_cause(ends: list[RankEnd]) -> RankEnd | None:
    """The rank whose end brought the others down: a rank killed by a signal other than the launcher's SIGTERM
    first, then one that failed on its own, then whichever the launcher saw first."""
    failed = [e for e in ends if e.code not in (0, None)]
    if not failed:
        return None

    def rank_of(e: RankEnd) -> tuple[int, int, int]:
        terminated = e.code == -signal.SIGTERM
        lost_peer = e.rank == 0 and e.code == 1  # rank 0 ends with an error once a peer is gone
        return (terminated, lost_peer, e.order)

    return min(failed, key=rank_of)


def how_it_ended(code: int | None, remote: bool) -> str:
    if code is None:
        return "was stopped by the launcher"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return "was killed (SIGKILL)" if code == -signal.SIGKILL else f"was ended by {name}"
    if code == 255 and remote:
        return "lost its ssh connection (exit code 255)"
    return f"failed (exit code {code})"


def checkpoint_note(run_dir: str, resume_hint: str) -> str:
    latest = ckpt.latest_checkpoint(Path(run_dir)) if run_dir else None
    if latest is None:
        return "No checkpoint had been saved yet: start the run again."
    return f"The last checkpoint, step {latest.step} ({latest.path}), is intact: resume from it ({resume_hint})."


def fault_message(machines: Machines, cause: RankEnd, errors: dict[int, str], run_dir: str, resume_hint: str) -> str:
    """One paragraph: which rank on which host, what it said or how it ended, and where to go on from."""
    host = machines.hosts[cause.rank] if 0 <= cause.rank < machines.size else None
    said = errors.get(cause.rank)
    what = f"failed: {said}" if said else how_it_ended(cause.code, host is not None and not host.is_local)
    return f"{machines.who(cause.rank)} {what}, so training stopped on every machine. " + checkpoint_note(
        run_dir, resume_hint
    )
