"""What the ranks of one trainer agree on while they run: stop and pause, the run's facts, throughput, sums.

Every function here is a collective: every rank calls it at the same point of the run, or none does. Each is a
few numbers, on the backend's own communication stream (as mlx.nn.average_gradients leaves it).
"""

from __future__ import annotations

import dataclasses
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import mlx.core as mx

from ..config import TrainConfig
from ..errors import UserError
from ..runs import checkpoints as ckpt
from ..runs.run_folder import RunFolder

POLL_SECONDS = 0.25  # how often paused ranks ask each other whether to go on
NAME_BYTES = 64


def _gather(values: list[float], group: Any) -> list[list[float]]:
    """Each rank's values, in rank order."""
    rows = mx.distributed.all_gather(mx.array(values, dtype=mx.float32)[None], group=group)
    return cast(list[list[float]], rows.tolist())


class AgreedControl:
    """Stop and pause at the same step on every rank.

    Each step starts with one all_sum of every rank's [stop asked, paused]. Any rank asked to stop or pause
    makes all of them stop or pause there: a rank that stopped alone would leave the others waiting in the next
    gradient sum forever. Paused ranks ask again every POLL_SECONDS; the time is kept out of speed and ETA.
    """

    def __init__(self, group: Any, stop_asked: Callable[[], bool], paused: Callable[[], bool]):
        self.group, self.stop_asked, self.paused = group, stop_asked, paused
        self._stop = False

    def _flags(self) -> tuple[bool, bool]:
        local = mx.array([float(self.stop_asked()), float(self.paused())], dtype=mx.float32)
        stop, paused = cast(list[float], mx.distributed.all_sum(local, group=self.group).tolist())
        return stop > 0, paused > 0

    def wait_if_paused(self, progress: Any) -> None:
        """The step's agreement; waits while any rank is paused (`progress.paused` counts the time)."""
        since = None
        while True:
            self._stop, paused = self._flags()
            if self._stop or not paused:
                break
            since = since or time.perf_counter()
            time.sleep(POLL_SECONDS)
        if since is not None:
            progress.paused += time.perf_counter() - since

    def stop_requested(self) -> bool:
        """What the ranks agreed at the start of this step (no collective: safe to ask any number of times)."""
        return self._stop


def machine_names(group: Any) -> list[str]:
    """The host name of each rank, in rank order."""
    name = socket.gethostname().encode("utf-8")[:NAME_BYTES].ljust(NAME_BYTES, b"\0")
    rows = mx.distributed.all_gather(mx.array(list(name), dtype=mx.int32)[None], group=group)
    return [bytes(row).rstrip(b"\0").decode("utf-8", "replace") for row in cast(list[list[int]], rows.tolist())]


def check_ranks_agree(group: Any, facts: dict[str, float], names: list[str]) -> None:
    """Every rank must see the same run (rows, tokens, steps, the step it starts at); UserError naming the first
    rank that does not, on every rank, so that all of them stop before the first step."""
    rows = _gather(list(facts.values()), group)
    for rank, row in enumerate(rows[1:], 1):
        for (what, mine), theirs in zip(zip(facts, rows[0], strict=True), row, strict=True):
            if theirs != mine:
                raise UserError(
                    f"the machines disagree on {what}: rank 0 ({names[0]}) has {mine:g}, rank {rank} ({names[rank]}) "
                    f"has {theirs:g}. Every machine needs the same data, model and run folder at the same paths: "
                    "run the machines check again (or --share)"
                )


def rank_shares(group: Any, count: float) -> list[float]:
    """Each rank's share of what all of them trained since the last report (its micro-batches' counts). The
    ranks step together, so a rank's speed is its share of the run's: the shares of the speed add up to it."""
    counts = [row[0] for row in _gather([count], group)]
    total = sum(counts)
    return [c / total if total else 1 / len(counts) for c in counts]


def sum_across_ranks(values: list[float], group: Any) -> list[float]:
    """Element-wise sums of every rank's numbers (validation's sums, each rank over its share of the batches)."""
    if group is None or group.size() == 1:
        return values
    return cast(list[float], mx.distributed.all_sum(mx.array(values), group=group).tolist())


def rank_resume_source(adapter_path: str, resume: bool, resume_from: Path | None) -> Path | None:
    """The checkpoint a rank other than 0 starts from, read from this host's copy. Rank 0 owns the run folder and
    checks it (resume_source); the others only read, so they neither lock it nor ask whether it holds a run."""
    if resume_from is not None:
        return Path(resume_from)
    if not resume:
        return None
    latest = ckpt.latest_checkpoint(RunFolder(adapter_path).path)
    if latest is None:
        raise UserError(
            f"{socket.gethostname()}: no checkpoint in {adapter_path} to resume from; every machine needs the run "
            "folder's latest checkpoint at the same path (qlora-gui train --hosts and the app copy it themselves)"
        )
    return latest.path


def settings_on_ranks(cfg: TrainConfig, world: int, resumed_run: Path | None) -> tuple[TrainConfig, list[str]]:
    """The settings the loop runs with on `world` ranks, and notes on how the ranks share the work.

    Going back to a checkpoint after a divergence needs every rank to decide it together, but each rank sees
    only its own micro-batches' losses: on several ranks a diverged run stops instead."""
    notes, b = [], cfg.batch_size
    if resumed_run is not None:
        before = _ranks_before(resumed_run)
        if before is not None and before != world:
            ranks = {n: "one process" if n == 1 else f"{n} ranks" for n in (before, world)}
            notes.append(
                f"resumed on {ranks[world]}; until now the run trained on {ranks[before]}: the same global batches, "
                "split differently (a step's sums weigh every token alike: the same result)"
            )
    if world > 1 and b < world:
        notes.append(
            f"batch size {b} is smaller than the {world} ranks: ranks {b} to {world - 1} train no rows and only "
            f"wait; raise the batch size to at least {world}"
        )
    elif world > 1 and b % world:
        notes.append(
            f"batch size {b} over {world} ranks: each batch splits into parts of {b // world + 1} and {b // world} "
            "rows; the step is still the whole batch's (token-weighted), and the ranks with more rows set the pace"
        )
    if world == 1 or not cfg.divergence_retries:
        return cfg, notes
    notes.append(
        f"retry after divergence ({cfg.divergence_retries}) is off on several machines: each rank sees only its own "
        "bad micro-batches, so a diverged run stops; resume it from the last checkpoint with a lower learning rate"
    )
    return dataclasses.replace(cfg, divergence_retries=0), notes


def _ranks_before(run_dir: Path) -> int | None:
    """How many ranks the run's last start had (its metrics.jsonl); None when unknown."""
    from ..events import RunStarted
    from ..runs.history import read_events

    starts = [e for e in read_events(run_dir) if isinstance(e, RunStarted)]
    return max(len(starts[-1].machines or []), 1) if starts else None
