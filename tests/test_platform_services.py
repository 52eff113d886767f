"""What the app asks of the operating system, with fakes for what this machine lacks: the computer kept awake
while a run trains, and MLX proven to compute where it will train (the GPU on a Mac)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from qlora_gui.core.compute_check import ComputeError, check_compute
from qlora_gui.core.sleep_guard import SleepGuard, hold_command


class FakeProcess:
    def __init__(self, argv: list[str]):
        self.argv, self.terminated, self.stdin = argv, False, SimpleNamespace(closed=False)
        self.stdin.close = lambda: setattr(self.stdin, "closed", True)

    def terminate(self) -> None:
        self.terminated = True

    def wait(self, timeout: float | None = None) -> int:
        return 0


class FakeRunner:
    def __init__(self) -> None:
        self.started: list[FakeProcess] = []

    def __call__(self, argv: list[str]) -> FakeProcess:
        self.started.append(FakeProcess(argv))
        return self.started[-1]


def on(platform: str, found: tuple[str, ...]):
    """hold_command as it runs on `platform` with only these commands on PATH."""
    which = {name: f"/usr/bin/{name}" for name in found}.get
    return lambda reason: hold_command(reason, platform=platform, pid=4321, which=which)


def test_on_macos_caffeinate_holds_idle_sleep_off_until_the_run_ends_or_the_app_dies():
    runner = FakeRunner()
    guard = SleepGuard(runner, on("darwin", ("caffeinate",)))
    assert guard.hold("Training run-1") and guard.held
    assert guard.hold("Training run-1")  # a second start of the same run holds nothing more
    assert [p.argv for p in runner.started] == [["/usr/bin/caffeinate", "-i", "-w", "4321"]]
    guard.release()
    assert runner.started[0].terminated and not guard.held
    guard.release()  # the end of a run may be reported twice (its last event, then its thread)


def test_on_linux_systemd_inhibit_holds_a_lock_that_goes_with_its_pipe():
    runner = FakeRunner()
    guard = SleepGuard(runner, on("linux", ("systemd-inhibit", "cat")))
    assert guard.hold("Training run-2")
    argv = runner.started[0].argv
    assert argv[0] == "/usr/bin/systemd-inhibit" and argv[-1] == "/usr/bin/cat"
    assert "--what=idle:sleep" in argv and "--why=Training run-2" in argv and "--who=QLoRA Studio" in argv
    guard.release()
    assert runner.started[0].stdin.closed and runner.started[0].terminated


def test_without_a_way_to_hold_sleep_off_training_goes_on_without_one():
    runner = FakeRunner()
    assert not SleepGuard(runner, on("linux", ("cat",))).hold("Training")  # no systemd (a container, say)
    assert not SleepGuard(runner, on("win32", ())).hold("Training")

    def missing(argv: list[str]) -> FakeProcess:
        raise FileNotFoundError(argv[0])

    guard = SleepGuard(missing, on("darwin", ("caffeinate",)))
    assert not guard.hold("Training") and not guard.held
    assert runner.started == []


def fake_mx(metal: bool = True, fails: str = "", result: float = 64.0**3) -> SimpleNamespace:
    def matmul(a, b, stream=None):
        if fails:
            raise RuntimeError(fails)
        return a

    return SimpleNamespace(
        __file__="/Apps/QLoRA Studio.app/Contents/Frameworks/mlx/core.so",
        __version__="0.32.4",
        metal=SimpleNamespace(is_available=lambda: metal),
        gpu="gpu",
        Device=lambda kind, index: SimpleNamespace(type=SimpleNamespace(name=kind)),
        ones=lambda shape: "a",
        matmul=matmul,
        sum=lambda x, stream=None: SimpleNamespace(item=lambda: result),
        eval=lambda x: None,
        device_info=lambda: {"device_name": "Apple M2"},
    )


def test_on_a_mac_the_smoke_test_needs_the_gpu_and_names_the_metallib_when_it_fails():
    assert check_compute(fake_mx(), platform="darwin").startswith("compute: gpu (Metal) on Apple M2, MLX 0.32.4")
    metallib = str(Path("/Apps/QLoRA Studio.app/Contents/Frameworks/mlx/lib/mlx.metallib"))
    with pytest.raises(ComputeError) as no_metal:
        check_compute(fake_mx(metal=False), platform="darwin")
    assert "Metal is not available" in str(no_metal.value) and f"{metallib} (missing)" in str(no_metal.value)
    with pytest.raises(ComputeError) as no_kernels:
        check_compute(fake_mx(fails="Failed to load the default metallib"), platform="darwin")
    assert "Failed to load the default metallib" in str(no_kernels.value) and metallib in str(no_kernels.value)
    with pytest.raises(ComputeError, match="wrong result"):
        check_compute(fake_mx(result=0.0), platform="darwin")


def test_elsewhere_the_smoke_test_computes_on_mlx_s_own_device():
    assert check_compute().startswith("compute: ")  # this machine's real MLX
