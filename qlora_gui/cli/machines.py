"""`qlora-gui train` on several machines: --nodes and --hosts start mlx.launch themselves; what each rank runs with.

These are launch options, not training settings: where a run trains does not change what it trains (the same
global batch gives the same adapter on one machine or several), so they are not in config.yaml.
"""

from __future__ import annotations

import argparse
import json
import shlex
import socket
import sys
import threading
from pathlib import Path
from typing import Any

from ..core.config import TrainConfig, config_from_dict
from ..core.distributed.event_lines import LaunchNote
from ..core.distributed.hostfile import Machines
from ..core.distributed.launch import CONTROL_LINES
from ..core.errors import ConfigError, UserError
from ..core.events import Event, EventCallback, Failed
from .console import ctrl_c_stops, note


def add_machine_flags(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("several machines (data parallel over MLX's distributed layer)")
    g.add_argument(
        "--nodes",
        type=int,
        metavar="N",
        help="train with N processes on this machine (the ring backend over localhost), to try data-parallel "
        "training on one computer; --batch-size stays the global batch, split across them",
    )
    g.add_argument(
        "--hosts",
        metavar="HOSTFILE",
        help="train on the machines of an mlx.launch hostfile (JSON; this machine first). Every host is checked "
        "over ssh before any weights load: the same Python environment, model and data (paths and content)",
    )
    g.add_argument(
        "--share",
        action="store_true",
        help="with --hosts: copy the model and data to the other hosts first (rsync over ssh, only what differs)",
    )
    g.add_argument(
        "--events-json",
        action="store_true",
        help="print each event as one JSON line on standard output (what --nodes, --hosts and the app read)",
    )
    g.add_argument(
        "--control-stdin",
        action="store_true",
        help="take stop, pause and resume as lines on standard input (mlx.launch hands its input to every rank)",
    )
    g.add_argument(
        "--settings-json",
        metavar="JSON",
        help="every setting as one JSON object instead of flags and -c (what --nodes and --hosts give each rank)",
    )


def machines_of(args: argparse.Namespace) -> Machines | None:
    """The machines --nodes or --hosts name; None: train in this process."""
    if args.nodes is not None and args.hosts:
        raise UserError("give --nodes N (processes on this machine) or --hosts FILE (several machines), not both")
    if args.share and not args.hosts:
        raise UserError("--share copies the model and data to the hosts of --hosts FILE; give --hosts")
    if getattr(args, "preflight", False) and (args.nodes is not None or args.hosts):
        raise UserError("--preflight measures this machine alone; drop --nodes/--hosts to run it")
    if args.nodes is not None:
        return Machines.local(args.nodes)
    return Machines.read(args.hosts) if args.hosts else None


def settings_config(text: str) -> TrainConfig:
    try:
        values = json.loads(text)
    except ValueError as e:
        raise ConfigError(f"--settings-json: not valid JSON ({e})") from e
    if not isinstance(values, dict):
        raise ConfigError("--settings-json: must be one JSON object of settings")
    return config_from_dict(values)[0]


# ---------------------------------------------------------------- the console, for a run on several machines


def run_on_machines(args: argparse.Namespace, cfg: TrainConfig, machines: Machines, reporter: EventCallback) -> int:
    """Supervise mlx.launch; exit codes and Ctrl-C as for one process (the first Ctrl-C stops with a checkpoint)."""
    from ..core.distributed.supervisor import DistributedRun

    where = f"--nodes {args.nodes}" if args.nodes is not None else f"--hosts {shlex.quote(args.hosts)}"
    run_dir = shlex.quote(str(Path(cfg.adapter_path).resolve()))

    def callback(e: Event) -> None:
        if isinstance(e, LaunchNote):
            note(e.message)
        else:
            reporter(e)

    run = DistributedRun(
        cfg,
        machines,
        callback,
        share=args.share,
        output=note,
        resume_hint=f"qlora-gui train --adapter-path {run_dir} --resume {where}",
    )
    says = "stopping every rank after this step and saving a checkpoint (Ctrl-C again to end them at once)"
    with ctrl_c_stops(run.stop, run.abort, says) as interrupted:
        result = run.run()
    if isinstance(result, Failed):
        return result.exit_code
    return 130 if interrupted else 0


# ---------------------------------------------------------------- a rank


def follow_stdin(trainer: Any) -> None:
    """Apply stop, pause and resume lines from standard input to the trainer (the ranks agree on the step)."""

    def read() -> None:
        for line in sys.stdin:
            what = line.strip()
            if what in CONTROL_LINES:
                getattr(trainer, what)()

    threading.Thread(target=read, name="control-stdin", daemon=True).start()


def report_rank_failure(rank: int, result: Event) -> None:
    """A rank other than 0 reports no events; its failure goes to standard error, where the supervisor reads it."""
    if rank == 0 or not isinstance(result, Failed):
        return
    where = f"[rank {rank} on {socket.gethostname()}]"
    note(f"{where} error: {' '.join(result.message.split())}")
    for line in result.problems:
        note(f"{where}   {line}")
