"""Several machines without running them: hostfiles, the check before a run (a fake ssh runner, and this machine
for real), copies, events as JSON lines, the global batch split across ranks, and what a rank's death says."""

from __future__ import annotations

import json
import math
import socket

import numpy as np
import pytest
from conftest import write_jsonl

from qlora_gui.cli import main
from qlora_gui.core.config import TrainConfig
from qlora_gui.core.data.batching import epoch_batches
from qlora_gui.core.distributed.checks import Completed, SystemRunner, check_machines
from qlora_gui.core.distributed.event_lines import LaunchNote, parse_event_line
from qlora_gui.core.distributed.faults import RankEnd, fault_message, first_cause, launcher_line, rank_error
from qlora_gui.core.distributed.hostfile import LOCAL, Host, Machines
from qlora_gui.core.distributed.probe import HashCache, probe
from qlora_gui.core.distributed.share import share_paths
from qlora_gui.core.distributed.supervisor import DistributedRun
from qlora_gui.core.errors import UserError
from qlora_gui.core.events import Failed, Finished, RunStarted, StepReport, ValidationResult

PYTHON = "/opt/venv/bin/python"


def two_macs(backend: str = "ring") -> Machines:
    return Machines.from_json(
        {"backend": backend, "hosts": [{"ssh": LOCAL, "ips": ["10.0.0.1"]}, {"ssh": "mac-2", "ips": ["10.0.0.2"]}]}
    )


class FakeRunner:
    """Answers for each host as given (this machine, when not given, for real); records every command."""

    def __init__(self, answers: dict[str, Completed]):
        self.answers, self.calls = answers, []

    def on(self, host: Host, argv: list[str], timeout: float) -> Completed:
        self.calls.append((host.ssh, argv))
        if host.ssh not in self.answers and host.is_local:
            return SystemRunner().on(host, argv, timeout)
        return self.answers.get(host.ssh, Completed(0))

    def here(self, argv: list[str], timeout: float) -> Completed:
        self.calls.append(("here", argv))
        return self.answers.get("here", Completed(0))


def report(host: str = "mac", **changes) -> dict:
    found = {
        "host": host,
        "python": PYTHON,
        "python_version": "3.11.7",
        "packages": {"mlx": "0.32.4", "mlx-lm": "0.32.2", "qlora-gui": "0.1.0"},
        "paths": {"/m": {"kind": "folder", "files": 4, "bytes": 100, "sha256": "aa"}},
    }
    found.update(changes)
    return found


def answer(found: dict) -> Completed:
    return Completed(0, "some login banner\n" + json.dumps(found) + "\n")


def test_hostfiles_are_read_as_mlx_launch_writes_them_and_refused_with_the_fix(tmp_path):
    path = tmp_path / "hosts.json"
    path.write_text(json.dumps([{"ssh": "mac-1", "ips": ["192.168.2.1"]}, {"ssh": "mac-2", "ips": ["192.168.2.2"]}]))
    machines = Machines.read(path)
    assert machines.backend == "ring" and [h.ssh for h in machines.hosts] == ["mac-1", "mac-2"]
    assert Machines.from_json(json.loads(machines.to_text())) == Machines(machines.hosts, "ring", [], "the hostfile")
    assert machines.who(1) == "rank 1 on mac-2"
    assert Machines.local(2).who(1) == f"rank 1 on this machine ({socket.gethostname()})"
    for data, words in (
        ({"hosts": [{"ips": ["1.2.3.4"]}, {"ssh": "b", "ips": ["1.2.3.5"]}]}, 'host 1 has no "ssh" name'),
        ([{"ssh": "a", "ips": ["1.2.3.4"]}, {"ssh": "b"}], 'host 2 (b) has no "ips": the ring backend connects'),
        ([{"ssh": "a", "ips": ["mac-a"]}, {"ssh": "b", "ips": ["1.2.3.5"]}], "'mac-a' is not an IP address"),
        ([{"ssh": "a", "ips": ["1.2.3.4"]}], "at least 2 hosts"),
        ({"backend": "jaccl", "hosts": [{"ssh": "a", "ips": ["1.2.3.4"]}, {"ssh": "b"}]}, "rdma_ctl enable"),
        ({"backend": "tcp", "hosts": []}, "'tcp' is not one of ring, jaccl, jaccl-ring"),
        ("hosts", "a hostfile is a JSON list of hosts"),
    ):
        with pytest.raises(UserError, match=words.replace("(", r"\(").replace(")", r"\)")):
            Machines.from_json(data)
    with pytest.raises(UserError, match="at least 2"):
        Machines.local(1)


def test_the_check_names_each_host_and_the_fix():
    ok = report()
    runner = FakeRunner(
        {
            LOCAL: answer(ok),
            "mac-2": Completed(255, "", "alice@mac-2: Permission denied (publickey,password)."),
            "mac-3": Completed(127, "", f"bash: {PYTHON}: No such file or directory"),
            "mac-4": answer(report(packages={"mlx": "0.31.0", "mlx-lm": "0.32.2", "qlora-gui": "0.1.0"})),
            "mac-5": answer(report(paths={"/m": {"kind": "missing"}})),
            "mac-6": answer(report(paths={"/m": {"kind": "folder", "files": 4, "bytes": 90, "sha256": "bb"}})),
            "mac-7": Completed(255, "", "ssh: Could not resolve hostname mac-7: nodename nor servname provided"),
        }
    )
    hosts = [{"ssh": LOCAL, "ips": ["10.0.0.1"]}] + [{"ssh": f"mac-{i}", "ips": [f"10.0.0.{i}"]} for i in range(2, 8)]
    result = check_machines(Machines.from_json(hosts), {"model": "/m"}, runner, PYTHON, reference=ok)
    texts = [p.text() for p in result.problems]
    assert not result.ok and len(texts) == 6
    assert texts[0].startswith("mac-2 (rank 1): refuses an ssh login without a password; set up key login: ssh-copy")
    assert texts[1].startswith(f"mac-3 (rank 2): has no Python at {PYTHON}; mlx.launch starts the same Python")
    assert texts[2] == (
        "mac-4 (rank 3): has mlx 0.31.0 (here: 0.32.4); install the same versions there: "
        f"{PYTHON} -m pip install mlx==0.32.4"
    )
    assert texts[3].startswith("mac-5 (rank 4): has no model at /m; copy it there: add --share")
    assert texts[4].startswith("mac-6 (rank 5): its model at /m differs from this machine's (4 files, 90 bytes")
    assert texts[5].startswith("mac-7 (rank 6): is a name that does not resolve")
    assert result.summary().startswith("6 problems with 7 machines (this machine, mac-2, mac-3,")
    assert result.details() == texts
    # every host is asked once, with the same interpreter as here, for the same paths
    assert sorted(c[0] for c in runner.calls) == sorted(h["ssh"] for h in hosts)
    assert runner.calls[0][1] == [PYTHON, "-m", "qlora_gui.core.distributed.probe", "/m"]


def test_jaccl_needs_macos_26_2_and_rdma_on_every_mac():
    hosts = [
        {"ssh": LOCAL, "ips": ["10.0.0.1"], "rdma": [None, "rdma_en3"]},
        {"ssh": "mac-2", "ips": ["10.0.0.2"], "rdma": ["rdma_en3", None]},
    ]
    ready = report(macos="26.2", rdma="RDMA is enabled")
    runner = FakeRunner({LOCAL: answer(ready), "mac-2": answer(report(macos="15.6", rdma=None))})
    result = check_machines(Machines.from_json({"backend": "jaccl", "hosts": hosts}), {"model": "/m"}, runner,
                            PYTHON, reference=ready)  # fmt: skip
    assert [p.text().split(";")[0] for p in result.problems] == ["mac-2 (rank 1): runs macOS 15.6"]
    runner = FakeRunner({LOCAL: answer(ready), "mac-2": answer(report(macos="26.3", rdma="RDMA is disabled"))})
    result = check_machines(Machines.from_json({"backend": "jaccl", "hosts": hosts}), {"model": "/m"}, runner,
                            PYTHON, reference=ready)  # fmt: skip
    assert result.problems[0].text().startswith("mac-2 (rank 1): has RDMA off (rdma_ctl status: RDMA is disabled)")
    assert "rdma_ctl enable" in result.problems[0].text()


def test_rank_0_must_be_this_machine():
    hosts = [{"ssh": "mac-2", "ips": ["10.0.0.2"]}, {"ssh": LOCAL, "ips": ["10.0.0.1"]}]
    runner = FakeRunner({"mac-2": answer(report("mac-2")), LOCAL: answer(report())})
    result = check_machines(Machines.from_json(hosts), {"model": "/m"}, runner, PYTHON, reference=report())
    assert [p.text() for p in result.problems] == [
        "mac-2 (rank 0): rank 0 would run on mac-2, not on this machine (mac); rank 0 writes the run folder and "
        "reports the run; put this machine first in the hostfile"
    ]


def test_the_local_check_for_real(tmp_path, demo_model, text_data):
    paths = {"model": str(demo_model), "data": str(text_data)}
    result = check_machines(Machines.local(2), paths)
    assert result.ok, result.summary()
    assert list(result.reports) == [LOCAL]  # two ranks on one host: asked once
    # the content hash follows the content, not the file's name or time
    here = probe([str(text_data)], HashCache(tmp_path / "cache.json"))["paths"][str(text_data)]
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "train.jsonl").write_bytes((text_data / "train.jsonl").read_bytes())
    (copy / "valid.jsonl").write_bytes((text_data / "valid.jsonl").read_bytes())
    (copy / ".DS_Store").write_bytes(b"finder")
    cache = HashCache(tmp_path / "cache.json")
    assert probe([str(copy)], cache)["paths"][str(copy)]["sha256"] == here["sha256"]
    (copy / "valid.jsonl").write_text("{}\n")
    assert probe([str(copy)], cache)["paths"][str(copy)]["sha256"] != here["sha256"]


def test_share_copies_to_each_remote_host_once(tmp_path):
    data = write_jsonl(tmp_path / "d" / "train.jsonl", [{"text": "a"}])
    machines = Machines.from_json(
        [
            {"ssh": LOCAL, "ips": ["10.0.0.1"]},
            {"ssh": "mac-2", "ips": ["10.0.0.2"]},
            {"ssh": "mac-2", "ips": ["10.0.0.2"]},
        ]
    )
    runner = FakeRunner({})
    assert share_paths(machines, [str(data.parent)], runner) == []
    assert runner.calls == [
        ("mac-2", ["mkdir", "-p", str(data.parent)]),
        ("here", ["rsync", "-a", "--delete", "-e", "ssh -o BatchMode=yes -o ConnectTimeout=10",
                  f"{data.parent}/", f"mac-2:{data.parent}"]),
    ]  # fmt: skip
    runner = FakeRunner({"here": Completed(23, "", "rsync: connection unexpectedly closed")})
    problems = share_paths(machines, [str(data)], runner)
    assert problems[0].startswith(f"mac-2: copying {data} failed (rsync: connection unexpectedly closed)")


def test_an_unreachable_host_stops_the_run_before_any_weights_load(tmp_path, demo_model, text_data):
    runner = FakeRunner({"mac-2": Completed(255, "", "ssh: connect to host 10.0.0.2 port 22: Operation timed out")})
    cfg = TrainConfig(model=str(demo_model), data=str(text_data), adapter_path=str(tmp_path / "run"))
    events = []
    result = DistributedRun(cfg, two_macs(), events.append, runner=runner).run()
    assert isinstance(result, Failed) and result.exit_code == 2
    assert result.message.startswith(
        "1 problem with 2 machines (this machine, mac-2; ring). mac-2 (rank 1): does not answer over ssh"
    )
    assert "`ssh mac-2 true` works" in result.message
    assert [e.message for e in events if isinstance(e, LaunchNote)] == [
        "Checking 2 machines (this machine, mac-2; ring)…"
    ]
    assert not (tmp_path / "run").exists()  # nothing started, nothing written


def test_events_come_back_from_json_lines_as_they_went():
    events = [
        StepReport(3, 0.5, math.nan, 1e-4, 900.0, 2.0, 1000, 3.5, 10.0, 0.1, 0.2, 0.0, 0.3, [450.0, 450.0]),
        ValidationResult(3, 1.25, 400, True, 0.5),
        RunStarted("/r", {"iters": 3}, 10, 100, 5, 3, 0, 48, 12, 0.1, machines=["a", "b"]),
        Finished(3, False, 1.0, None, None, None, "/r", 4.0),
        Failed("boom", problems=["x:1: bad"]),
        LaunchNote("Checking…"),
    ]
    back = [parse_event_line(e.to_json_line()) for e in events]
    assert math.isnan(back[0].loss) and back[0].rank_tokens_per_sec == [450.0, 450.0]
    back[0].loss = events[0].loss = 0.0
    assert back == events
    assert parse_event_line("Loading weights...") is None and parse_event_line('{"event": "nope"}') is None


def test_the_global_batch_is_split_across_ranks_and_no_row_is_dropped():
    lengths = np.random.default_rng(0).integers(5, 90, size=41)
    whole = epoch_batches(lengths, 5, seed=3, epoch=1)
    parts = [epoch_batches(lengths, 5, seed=3, epoch=1, rank=r, world=2) for r in (0, 1)]
    assert len(parts[0]) == len(parts[1]) == len(whole) == 9  # the same steps on every rank
    for batch, mine, theirs in zip(whole, *parts, strict=True):
        assert sorted(np.concatenate([mine, theirs]).tolist()) == sorted(batch.tolist())
        assert len(mine) - len(theirs) in (0, 1)  # 5 rows: 3 and 2; the 1-row batch: 1 and none
    assert sorted(len(p) for p in parts[1]) == [0] + [2] * 8


def test_a_dead_rank_is_named_with_its_host_and_the_checkpoint_to_resume(tmp_path):
    ends = [launcher_line(line) for line in ("\x1b[33m[WARN] Node with rank 0 exited with code 1 \x1b[0m",
                                             "[WARN] Node with rank 1 exited with code -9", "nothing")]  # fmt: skip
    assert ends[2] is None and (ends[0].rank, ends[0].code, ends[1].code) == (0, 1, -9)
    ends[1].order = 1
    cause = first_cause([e for e in ends if e])
    assert cause is not None and cause.rank == 1  # rank 0's error only followed the loss of its peer
    assert first_cause([RankEnd(1, -15, 0), RankEnd(0, 2, 1)]).rank == 0  # the launcher's SIGTERM is no cause
    assert rank_error("[rank 1 on mac-2] error: no checkpoint in /r") == (1, "no checkpoint in /r")
    message = fault_message(two_macs(), cause, {}, str(tmp_path / "run"), "Resume in the app")
    assert message == (
        "rank 1 on mac-2 was killed (SIGKILL), so training stopped on every machine. "
        "No checkpoint had been saved yet: start the run again."
    )


def test_the_cli_refuses_what_cannot_run_before_any_weights_load(tmp_path, demo_model, text_data, capsys):
    base = ["train", "--model", str(demo_model), "--data", str(text_data), "--adapter-path", str(tmp_path / "run")]
    hosts = tmp_path / "hosts.json"
    hosts.write_text(json.dumps([{"ssh": LOCAL, "ips": [LOCAL]}, {"ssh": "mac-2.invalid", "ips": ["192.168.2.2"]}]))
    for extra, words in (
        (["--hosts", str(hosts)], "mac-2.invalid (rank 1): "),  # real ssh: the name does not resolve (or no ssh)
        (["--nodes", "2", "--hosts", str(hosts)], "give --nodes N (processes on this machine) or --hosts FILE"),
        (["--share"], "--share copies the model and data to the hosts of --hosts FILE"),
        (["--nodes", "1"], "--nodes 1: several processes means at least 2"),
        (["--nodes", "2", "--preflight"], "--preflight measures this machine alone"),
    ):
        assert main(base + extra) == 2, extra
        assert words in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
