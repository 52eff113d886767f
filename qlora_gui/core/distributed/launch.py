"""The commands of a run on several machines: mlx.launch, and `qlora-gui train` as each rank runs it.

Each rank gets the whole resolved config as one JSON argument (no file to copy to the hosts), prints its events
as JSON lines (`--events-json`; only rank 0 reports) and takes stop, pause and resume as lines on standard input
(`--control-stdin`): mlx.launch hands its own standard input to every rank, over ssh too.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

from .hostfile import Machines

DEFAULT_PORT = 32323  # mlx.launch's own default for the ring backend
CONTROL_LINES = ("stop", "pause", "resume")


def launcher_base() -> list[str]:
    """mlx.launch as this environment has it: its script beside this Python, else the same code run by it."""
    script = Path(sys.executable).with_name("mlx.launch")
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from mlx._distributed_utils.launch import main; sys.exit(main())"]


def rank_argv(settings: dict[str, Any], python: str = sys.executable) -> list[str]:
    """`qlora-gui train` for one rank, with every setting given (the hosts need no config file)."""
    return [
        python,
        "-m",
        "qlora_gui",
        "train",
        "--settings-json",
        json.dumps(settings, separators=(",", ":")),
        "--events-json",
        "--control-stdin",
    ]


def free_port_range(count: int, start: int = DEFAULT_PORT) -> int:
    """The first port from `start` such that it and the next count-1 are free here (the ring's local ranks
    each listen on one; a run still closing, or another run, holds its own)."""
    port = start
    while port + count < 65000:
        try:
            for p in range(port, port + count):
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                    s.bind(("127.0.0.1", p))
            return port
        except OSError:
            port += count
    return start


def launcher_argv(machines: Machines, hostfile: Path, port: int, rank: list[str]) -> list[str]:
    """mlx.launch with the hostfile written for this run; ranks sharing this machine share its cores."""
    envs = []
    local = sum(h.is_local for h in machines.hosts)
    if local > 1:  # OpenBLAS's threads per rank, so that N local ranks do not each take every core
        envs = ["--env", f"OPENBLAS_NUM_THREADS={max(1, (os.cpu_count() or 2) // local)}"]
    return [
        *launcher_base(),
        "--hostfile",
        str(hostfile),
        "--backend",
        machines.backend,
        "--starting-port",
        str(port),
        *envs,
        "--",
        *rank,
    ]
