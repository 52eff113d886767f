"""A run on several machines, supervised from this one: the check, the copies, then mlx.launch as a child process.

`DistributedRun(config, machines, callback).run()` checks every host before any weights load, starts mlx.launch
in a process group of its own (a Ctrl-C in the terminal reaches only this process, which asks the ranks to stop
with a checkpoint), hands rank 0's events to the callback as they come, and returns the Finished or Failed event;
it never raises. `stop()`, `pause()` and `resume()` are safe from any thread: each is a line on the launcher's
standard input, which mlx.launch hands to every rank, and the ranks agree on the step where it takes effect.
When a rank dies, mlx.launch ends the others at once; the Failed event then names the rank, its host and the
checkpoint to resume from.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import IO

from ..config import TrainConfig
from ..errors import UserError
from ..events import Event, EventCallback, Failed, Finished
from ..model.model_files import resolve_model_path
from ..runs.run_plan import resume_source
from .checks import CheckReport, Runner, SystemRunner, check_machines
from .event_lines import LaunchNote, parse_event_line
from .faults import RankEnd, fault_message, first_cause, launcher_line, rank_error
from .hostfile import Machines
from .launch import DEFAULT_PORT, free_port_range, launcher_argv, rank_argv
from .share import share_paths

FAULT_GRACE = 20.0  # seconds the other ranks get to end after one failed, before they are ended from here
ABORT_GRACE = 5.0  # seconds between SIGTERM and SIGKILL when ending the launcher's process group


def resolved_config(cfg: TrainConfig) -> TrainConfig:
    """The config every rank gets: absolute paths (a host's working folder may differ) and the model's folder."""
    out = dataclasses.replace(cfg)
    out.model = str(resolve_model_path(cfg.model).resolve())
    out.data = str(Path(cfg.data).resolve())
    out.adapter_path = str(Path(cfg.adapter_path).resolve())
    if cfg.sample_prompts:
        out.sample_prompts = str(Path(cfg.sample_prompts).resolve())
    return out


def run_paths(cfg: TrainConfig) -> dict[str, str]:
    """What every host must hold, the same as here, by what it is: {what: absolute path}."""
    paths = {"model": cfg.model, "data": cfg.data}
    if cfg.sample_prompts:
        paths["sample prompts file"] = cfg.sample_prompts
    return paths


def check_run_machines(cfg: TrainConfig, machines: Machines, runner: Runner | None = None) -> CheckReport:
    """The check a run makes before it starts, on its own (the app's Check button)."""
    return check_machines(machines, run_paths(resolved_config(cfg)), runner)


def end_process_group(proc: subprocess.Popen, grace: float = ABORT_GRACE) -> None:
    """SIGTERM to the launcher and every local rank, SIGKILL to what is left after `grace` seconds."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        try:
            proc.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


class DistributedRun:
    def __init__(
        self,
        config: TrainConfig,
        machines: Machines,
        callback: EventCallback | None = None,
        *,
        resume_from: str | Path | None = None,
        share: bool = False,
        runner: Runner | None = None,
        output: Callable[[str], None] | None = None,
        resume_hint: str = "Resume in the app",
    ):
        self.config, self.machines = config, machines
        self._callback = callback or (lambda e: None)
        self._output = output or (lambda line: None)  # the ranks' lines that are not events
        self._resume_from = Path(resume_from) if resume_from else None
        self._share, self._runner, self.resume_hint = share, runner or SystemRunner(), resume_hint
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._pending: list[str] = []  # controls asked before the launcher started
        self._aborted = False
        self._ends: list[RankEnd] = []
        self._errors: dict[int, str] = {}
        self._finished: Finished | None = None
        self._failed: Failed | None = None
        self._tail: deque[str] = deque(maxlen=200)

    # ---------------------------------------------------------- control (any thread)

    def stop(self) -> None:
        """Every rank finishes the current step; rank 0 saves a checkpoint; the run ends Finished(stopped)."""
        self._send("stop")

    def pause(self) -> None:
        self._send("pause")

    def resume(self) -> None:
        self._send("resume")

    def abort(self) -> None:
        """End every rank now, without a checkpoint (a second Ctrl-C)."""
        with self._lock:
            self._aborted = True
            proc = self._proc
        if proc is not None:
            end_process_group(proc)

    def _send(self, what: str) -> None:
        with self._lock:
            if self._proc is None:
                self._pending.append(what)
            else:
                self._write(what)

    def _write(self, what: str) -> None:
        try:
            stdin = self._proc.stdin if self._proc else None
            if stdin is not None:
                stdin.write(f"{what}\n".encode())
                stdin.flush()
        except (OSError, ValueError):
            pass  # the launcher has ended: nothing is left to control

    # ---------------------------------------------------------- run

    def run(self) -> Event:
        """Check, copy, launch, report; the Finished or Failed event. Never raises."""
        try:
            return self._run()
        except UserError as e:
            return self._fail(str(e), 2)
        except Exception as e:  # surfaced as a Failed event with the details, never a crash
            return self._fail(f"unexpected {type(e).__name__}: {e}", 1, traceback.format_exc())

    def _note(self, text: str) -> None:
        self._callback(LaunchNote(text))

    def _fail(self, message: str, exit_code: int, details: str = "", problems: list[str] | None = None) -> Failed:
        event = Failed(message, details, exit_code, problems or [])
        self._callback(event)
        return event

    def _run(self) -> Event:
        if getattr(sys, "frozen", False):  # the bundled app has no Python for mlx.launch to start on each host
            raise UserError(
                "training on several machines starts QLoRA Studio's Python environment on each of them; this is "
                "the bundled app, which has none: run QLoRA Studio from its Python environment (`make run`) instead"
            )
        cfg = resolved_config(self.config)
        cfg.validate()
        paths = run_paths(cfg)
        remote = self.machines.remote
        if self._share and remote:
            self._note(f"Copying the model and data to {', '.join(h.ssh for h in remote)}…")
            problems = share_paths(self.machines, list(paths.values()), self._runner, self._note)
            if problems:
                return self._fail(problems[0], 2, problems=problems)
        self._note(f"Checking {self.machines.describe()}…")
        report = check_machines(self.machines, paths, self._runner)
        if not report.ok:
            return self._fail(report.summary(), 2, problems=report.details())
        self._note(report.summary())
        start = resume_source(cfg, self._resume_from)  # rank 0's checks, and a branch's copy, before any launch
        if start is not None:
            cfg.resume = True  # the ranks continue from the run folder's latest checkpoint: this one
            if remote:
                problems = share_paths(self.machines, [str(start)], self._runner, self._note)
                if problems:
                    return self._fail(problems[0], 2, problems=problems)
        with self._lock:
            stopped = self._aborted or "stop" in self._pending
        if stopped:  # asked to stop while checking or copying: nothing has trained, so nothing is saved
            return self._fail("stopped before training started: no rank was started, nothing was saved", 130)
        with tempfile.TemporaryDirectory(prefix="qlora-gui-launch-") as tmp:
            hostfile = Path(tmp) / "hosts.json"
            hostfile.write_text(self.machines.to_text(), encoding="utf-8")
            local = any(h.is_local for h in self.machines.hosts)
            port = free_port_range(self.machines.size) if local else DEFAULT_PORT
            self._note(f"Starting {self.machines.describe()}…")
            return self._supervise(launcher_argv(self.machines, hostfile, port, rank_argv(cfg.to_dict())), cfg)

    def _supervise(self, argv: list[str], cfg: TrainConfig) -> Event:
        try:
            proc = subprocess.Popen(
                argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
            )
        except OSError as e:
            why = f"{argv[0]}: {e.strerror}"
            raise UserError(f"cannot start mlx.launch ({why}); reinstall mlx in this environment") from e
        with self._lock:
            self._proc = proc
            for what in self._pending:
                self._write(what)
            self._pending.clear()
            aborted = self._aborted
        if aborted:
            end_process_group(proc)
        readers = [
            threading.Thread(target=self._read_events, args=(proc.stdout,), daemon=True),
            threading.Thread(target=self._read_errors, args=(proc.stderr,), daemon=True),
        ]
        for t in readers:
            t.start()
        fault_at = None
        while proc.poll() is None:
            try:
                proc.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                pass
            if fault_at is None and first_cause(self._ends) is not None:
                fault_at = time.monotonic()
            if fault_at is not None and time.monotonic() - fault_at > FAULT_GRACE:
                end_process_group(proc)  # a rank that outlives a failed one would wait for it forever
        for t in readers:
            t.join(timeout=10)
        if proc.stdin is not None:
            proc.stdin.close()
        return self._outcome(proc.returncode, cfg)

    def _read_events(self, stream: IO[bytes]) -> None:
        for raw in stream:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            event = parse_event_line(line)
            if event is None:
                self._tail.append(line)
                self._output(line)
            elif isinstance(event, Failed):
                self._failed = event  # held: a lost peer's error is replaced by what happened to the peer
            else:
                self._finished = event if isinstance(event, Finished) else self._finished
                self._callback(event)

    def _read_errors(self, stream: IO[bytes]) -> None:
        for raw in stream:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            end = launcher_line(line)
            if end is not None:
                end.order = len(self._ends)
                self._ends.append(end)
                continue
            said = rank_error(line)
            if said is not None:
                self._errors.setdefault(*said)
            self._tail.append(line)
            if not line.startswith("[ring]"):  # the ring's own socket noise after a peer is gone
                self._output(line)

    def _outcome(self, returncode: int | None, cfg: TrainConfig) -> Event:
        if self._finished is not None:
            return self._finished
        details = "\n".join(self._tail)
        if self._aborted:
            return self._fail("stopped at once: every rank was ended without saving a checkpoint", 130, details)
        cause = first_cause(self._ends)
        if self._failed is not None and (cause is None or cause.rank == 0):
            self._callback(self._failed)  # rank 0's own error (bad data, a failed save, ...)
            return self._failed
        if cause is None:
            last = next((line for line in reversed(self._tail) if line.strip()), f"exit code {returncode}")
            return self._fail(f"the ranks ended before training finished ({last.strip()})", 1, details)
        message = fault_message(self.machines, cause, self._errors, cfg.adapter_path, self.resume_hint)
        if self._failed is not None:
            details = f"rank 0: {self._failed.message}\n{details}"
        return self._fail(message, 2 if cause.code == 2 else 1, details)
