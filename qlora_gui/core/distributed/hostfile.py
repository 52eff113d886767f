"""Who the ranks are: mlx.launch's hostfile, read, checked and written, and the N-local-processes case.

The format is MLX's own (`mlx.launch --hostfile`): a JSON list of hosts, or an object with "hosts", "backend"
and "envs". Each host has "ssh" (the name or address to ssh to), "ips" (where the ring backend's ranks connect,
for example the Thunderbolt bridge's addresses) and, for JACCL, "rdma" (the RDMA device towards each other host,
null towards itself). Rank r is the r-th host. A host whose "ssh" is 127.0.0.1 is started as a local process
(mlx.launch's own rule); every other one over ssh.
"""

from __future__ import annotations

import ipaddress
import json
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UserError

LOCAL = "127.0.0.1"
BACKENDS = ("ring", "jaccl", "jaccl-ring")
JACCL_NEEDS = (
    "JACCL (RDMA over Thunderbolt) needs macOS 26.2 or later on every Mac, Thunderbolt 5 ports and cables "
    "(every pair of Macs cabled; jaccl-ring: each Mac to its neighbours), the Thunderbolt bridge turned off, and "
    "RDMA turned on once per Mac: start it in Recovery, open Terminal and run `rdma_ctl enable`"
)


@dataclass
class Host:
    ssh: str
    ips: list[str] = field(default_factory=list)
    rdma: list[Any] = field(default_factory=list)

    @property
    def is_local(self) -> bool:
        """Started as a process of this machine, not over ssh."""
        return self.ssh == LOCAL


@dataclass
class Machines:
    """The ranks of one run, in rank order, and how they talk."""

    hosts: list[Host]
    backend: str = "ring"
    envs: list[str] = field(default_factory=list)
    source: str = ""  # the hostfile these came from, for messages

    @classmethod
    def local(cls, count: int) -> Machines:
        """`count` processes on this machine (to try data-parallel training on one computer)."""
        if count < 2:
            raise UserError(f"--nodes {count}: several processes means at least 2; leave --nodes out to train in one")
        return cls([Host(LOCAL, [LOCAL]) for _ in range(count)], "ring", source=f"--nodes {count}")

    @classmethod
    def read(cls, path: str | Path) -> Machines:
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except OSError as e:
            raise UserError(f"{path}: cannot read the hostfile ({e.strerror})") from e
        except ValueError as e:
            raise UserError(f"{path}: not valid JSON ({e}); a hostfile is mlx.launch's JSON list of hosts") from e
        return cls.from_json(data, str(path))

    @classmethod
    def from_json(cls, data: Any, source: str = "the hostfile") -> Machines:
        """Parse mlx.launch's format; UserError naming the host and what to write instead."""
        backend: Any = "ring"
        envs: Any = []
        entries: Any = data  # a plain list: the hosts alone
        if isinstance(data, dict):
            backend, envs, entries = data.get("backend") or "ring", data.get("envs") or [], data.get("hosts")
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise UserError(
                f'{source}: a hostfile is a JSON list of hosts, [{{"ssh": "mac-1", "ips": ["192.168.2.1"]}}, ...], '
                'or {"backend": "ring", "hosts": [...]} (mlx.launch\'s format)'
            )
        hosts = []
        for i, entry in enumerate(entries, 1):
            ssh = entry.get("ssh") if isinstance(entry.get("ssh"), str) else ""
            ips, rdma = entry.get("ips") or [], entry.get("rdma") or []
            if not isinstance(ips, list) or not all(isinstance(ip, str) for ip in ips):
                raise UserError(f'{source}: host {i} ({ssh}): "ips" must be a list of addresses, got {ips!r}')
            hosts.append(Host(ssh.strip(), ips, rdma if isinstance(rdma, list) else []))
        machines = cls(hosts, str(backend), [str(e) for e in envs] if isinstance(envs, list) else [], source)
        problems = machines.problems()
        if problems:
            raise UserError(f"{source}: {problems[0]}")
        return machines

    # ------------------------------------------------------------ checks and names

    def problems(self) -> list[str]:
        """What mlx.launch would refuse, or what cannot train, each with the fix."""
        out = []
        if self.backend not in BACKENDS:
            out.append(f"backend {self.backend!r} is not one of {', '.join(BACKENDS)}")
        if len(self.hosts) < 2:
            out.append("several machines means at least 2 hosts; with one, train on this machine alone")
        for i, h in enumerate(self.hosts):
            if not h.ssh:
                out.append(f'host {i + 1} has no "ssh" name; give the name or address to ssh to')
                continue
            if self.backend == "ring" and not h.ips:
                out.append(
                    f'host {i + 1} ({h.ssh}) has no "ips": the ring backend connects to IP addresses, e.g. '
                    'the Thunderbolt bridge\'s: "ips": ["192.168.2.1"]'
                )
            for ip in h.ips:
                try:
                    ipaddress.ip_address(ip)
                except ValueError:
                    out.append(f'host {i + 1} ({h.ssh}): {ip!r} is not an IP address (names go in "ssh")')
            if self.backend.startswith("jaccl") and (len(h.rdma) != len(self.hosts) or h.rdma[i] is not None):
                out.append(
                    f'host {i + 1} ({h.ssh}): "rdma" must list one RDMA device per host, null for itself '
                    f"({len(self.hosts)} entries); `mlx.distributed_config --backend jaccl --over thunderbolt` "
                    "writes them. " + JACCL_NEEDS
                )
        if self.backend.startswith("jaccl") and self.hosts and not self.hosts[0].ips:
            out.append(f'host 1 ({self.hosts[0].ssh}) needs "ips": the other Macs reach its coordinator there')
        return out

    @property
    def size(self) -> int:
        return len(self.hosts)

    @property
    def remote(self) -> list[Host]:
        """The hosts reached over ssh, each once."""
        seen: dict[str, Host] = {}
        for h in self.hosts:
            if not h.is_local:
                seen.setdefault(h.ssh, h)
        return list(seen.values())

    def who(self, rank: int) -> str:
        """'rank 1 on mac-2' (for messages)."""
        host = self.hosts[rank].ssh if 0 <= rank < len(self.hosts) else "an unknown host"
        return f"rank {rank} on {f'this machine ({socket.gethostname()})' if host == LOCAL else host}"

    def describe(self) -> str:
        if all(h.is_local for h in self.hosts):
            return f"{self.size} processes on this machine ({self.backend})"
        names = ", ".join("this machine" if h.is_local else h.ssh for h in self.hosts)
        return f"{self.size} machines ({names}; {self.backend})"

    # ------------------------------------------------------------ out

    def to_json(self) -> dict[str, Any]:
        hosts = [{"ssh": h.ssh, "ips": h.ips, **({"rdma": h.rdma} if h.rdma else {})} for h in self.hosts]
        return {"backend": self.backend, "envs": self.envs, "hosts": hosts}

    def to_text(self) -> str:
        return json.dumps(self.to_json(), indent=2) + "\n"
