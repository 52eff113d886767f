"""The check before a run on several machines: every host answers over ssh, runs the same Python environment and
holds the same model and data, at the same paths, with the same content. It runs before any weights load and
names the host and the fix for each problem.

Commands go through a `Runner`, so the logic is tested with a fake one; `SystemRunner` runs them for real (a
host named 127.0.0.1 as a local process, any other over ssh, as mlx.launch does).
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from .hostfile import JACCL_NEEDS, Host, Machines
from .probe import probe

PROBE_MODULE = "qlora_gui.core.distributed.probe"
SSH = ("ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10")
SAME_ENV_FIX = (
    "mlx.launch starts the same Python, at the same path, on every host: install this environment there at the "
    "same path (the same project folder, then `make run`; or `python -m venv` and `pip install` of the same versions)"
)


@dataclass
class Completed:
    returncode: int
    stdout: str = ""
    stderr: str = ""

    def last_error_line(self) -> str:
        lines = [line.strip() for line in self.stderr.splitlines() if line.strip()]
        return lines[-1] if lines else f"exit code {self.returncode}"


class Runner(Protocol):
    def on(self, host: Host, argv: list[str], timeout: float) -> Completed:
        """Run argv on a host (a local process for 127.0.0.1, else over ssh)."""
        ...

    def here(self, argv: list[str], timeout: float) -> Completed:
        """Run argv on this machine."""
        ...


class SystemRunner:
    def on(self, host: Host, argv: list[str], timeout: float) -> Completed:
        return self.here(argv if host.is_local else [*SSH, host.ssh, shlex.join(argv)], timeout)

    def here(self, argv: list[str], timeout: float) -> Completed:
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        except FileNotFoundError:
            return Completed(127, "", f"{argv[0]}: command not found")
        except subprocess.TimeoutExpired:
            return Completed(124, "", f"no answer within {timeout:.0f} s")
        return Completed(done.returncode, done.stdout, done.stderr)


@dataclass
class Problem:
    host: str
    ranks: list[int]
    what: str
    fix: str

    def text(self) -> str:
        ranks = ", ".join(map(str, self.ranks))
        return f"{self.host} (rank{'s' if len(self.ranks) > 1 else ''} {ranks}): {self.what}; {self.fix}"


@dataclass
class CheckReport:
    machines: Machines
    problems: list[Problem] = field(default_factory=list)
    reports: dict[str, dict[str, Any]] = field(default_factory=dict)  # each host's own report, by ssh name

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        """One line: that every host is ready, the one problem, or how many there are (`details` lists them)."""
        if len(self.problems) == 1:
            return f"1 problem with {self.machines.describe()}. {self.problems[0].text()}"
        if self.problems:
            return f"{len(self.problems)} problems with {self.machines.describe()}:"
        return f"{self.machines.describe()}: every host answers, with the same Python environment, model and data."

    def details(self) -> list[str]:
        """Each problem, when there are several."""
        return [p.text() for p in self.problems] if len(self.problems) > 1 else []


def host_names(machines: Machines) -> dict[str, list[int]]:
    """Each host (as the hostfile names it) with its ranks."""
    ranks: dict[str, list[int]] = {}
    for r, h in enumerate(machines.hosts):
        ranks.setdefault(h.ssh, []).append(r)
    return ranks


def check_machines(
    machines: Machines,
    paths: dict[str, str],
    runner: Runner | None = None,
    python: str = sys.executable,
    timeout: float = 120.0,
    reference: dict[str, Any] | None = None,
) -> CheckReport:
    """Ask every host for its environment and the content at `paths` ({what: path}), compare with this machine's."""
    runner = runner or SystemRunner()
    reference = reference or probe(list(paths.values()))
    report = CheckReport(machines)
    ranks = host_names(machines)
    first = {h.ssh: h for h in reversed(machines.hosts)}
    argv = [python, "-m", PROBE_MODULE, *paths.values()]
    with ThreadPoolExecutor(max_workers=min(8, len(ranks))) as pool:
        answers = dict(zip(ranks, pool.map(lambda name: runner.on(first[name], argv, timeout), ranks), strict=True))
    for name, done in answers.items():
        problem = _unreachable(first[name], done, python)
        if problem:
            report.problems.append(Problem(name, ranks[name], *problem))
            continue
        found = _parse(done.stdout)
        if found is None:
            what = f"answered, but not with the check's report ({done.stdout.strip()[:120]!r})"
            fix = "make sure a login shell there prints nothing to standard output (check ~/.zshrc)"
            report.problems.append(Problem(name, ranks[name], what, fix))
            continue
        report.reports[name] = found
        report.problems += [Problem(name, ranks[name], w, f) for w, f in _differences(found, reference, paths, name)]
        if machines.backend.startswith("jaccl"):
            report.problems += [Problem(name, ranks[name], w, f) for w, f in _rdma_problems(found)]
    head = machines.hosts[0]
    seen = report.reports.get(head.ssh)
    if not head.is_local and seen is not None and seen.get("host") != reference.get("host"):
        report.problems.insert(
            0,
            Problem(
                head.ssh,
                [0],
                f"rank 0 would run on {seen.get('host')}, not on this machine ({reference.get('host')}); rank 0 writes "
                "the run folder and reports the run",
                "put this machine first in the hostfile",
            ),
        )
    return report


def _parse(stdout: str) -> dict[str, Any] | None:
    for line in reversed(stdout.splitlines()):
        if line.startswith("{"):
            try:
                found = json.loads(line)
            except ValueError:
                return None
            return found if isinstance(found, dict) and "packages" in found else None
    return None


def _unreachable(host: Host, done: Completed, python: str) -> tuple[str, str] | None:
    """(what, fix) when the host could not run the check at all."""
    if done.returncode == 0:
        return None
    err, name = done.stderr, host.ssh
    if not host.is_local and err.startswith("ssh: command not found"):
        return "cannot be reached: there is no ssh here", "install OpenSSH's client (macOS has it built in)"
    if done.returncode == 124:
        return f"did not answer within the check's time ({done.last_error_line()})", (
            "check that it is on and awake; the first check of a large model reads all of it: try again"
        )
    if not host.is_local and done.returncode == 255:
        for needle, what, fix in (
            ("Permission denied", "refuses an ssh login without a password", f"set up key login: ssh-copy-id {name}"),
            ("Host key verification failed", "is not a known ssh host yet", f"connect once to accept it: ssh {name}"),
            ("Could not resolve", "is a name that does not resolve", "check the name, or use its IP address"),
            ("Connection refused", "refuses ssh", "turn on Remote Login there (System Settings › General › Sharing)"),
        ):
            if needle in err:
                return what, fix
        return f"does not answer over ssh ({done.last_error_line()})", (
            f"check that it is on, awake and cabled, and that `ssh {name} true` works from here without a password"
        )
    if done.returncode == 127 or (python in err and "No such file" in err):
        return f"has no Python at {python}", SAME_ENV_FIX
    if "No module named" in err:
        return f"its Python at {python} cannot import qlora_gui ({done.last_error_line()})", SAME_ENV_FIX
    return f"the check failed there ({done.last_error_line()})", SAME_ENV_FIX


def _differences(
    found: dict[str, Any], reference: dict[str, Any], paths: dict[str, str], name: str
) -> list[tuple[str, str]]:
    out = []
    ours, theirs = reference.get("packages", {}), found.get("packages", {})
    changed = [p for p in ours if ours.get(p) != theirs.get(p)]
    if found.get("python_version", "").split(".")[:2] != reference.get("python_version", "").split(".")[:2]:
        out.append((f"runs Python {found.get('python_version')}, here {reference.get('python_version')}", SAME_ENV_FIX))
    if changed:
        what = "; ".join(f"{p} {theirs.get(p) or 'not installed'} (here: {ours.get(p) or 'none'})" for p in changed)
        pins = " ".join(f"{p}=={ours[p]}" for p in changed if ours.get(p) and p != "qlora-gui")
        fix = f"install the same versions there: {found.get('python')} -m pip install {pins}" if pins else SAME_ENV_FIX
        out.append((f"has {what}", fix + ("; qlora-gui: the same project version" if "qlora-gui" in changed else "")))
    for label, path in paths.items():
        mine, there = reference["paths"].get(path, {}), found.get("paths", {}).get(path, {})
        copy = f"copy it there: add --share (the app: Share model and data), or rsync -a {shlex.quote(path)} {name}:…"
        if there.get("kind", "missing") == "missing":
            out.append((f"has no {label} at {path}", copy))
        elif there.get("sha256") != mine.get("sha256"):
            sizes = f"{there.get('files', 0)} files, {there.get('bytes', 0):,} bytes; here {mine.get('files', 0)}, "
            out.append(
                (f"its {label} at {path} differs from this machine's ({sizes}{mine.get('bytes', 0):,} bytes)", copy)
            )
    return out


def _rdma_problems(found: dict[str, Any]) -> list[tuple[str, str]]:
    """What JACCL needs of a Mac and this one lacks."""
    version = [int(x) for x in str(found.get("macos") or "0").split(".") if x.isdigit()]
    if version < [26, 2]:
        return [(f"runs macOS {found.get('macos') or 'not at all'}; JACCL needs 26.2 or later", JACCL_NEEDS)]
    status = str(found.get("rdma") or "")
    if "enabled" not in status or "disabled" in status:
        return [(f"has RDMA off (rdma_ctl status: {status or 'no answer'})", JACCL_NEEDS)]
    return []
