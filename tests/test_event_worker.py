"""The worker base: events posted in the worker thread reach the GUI thread in order, the last ones too,
and a stop is honoured by run() itself. Then the playground worker's events, without a model."""

from __future__ import annotations

import threading

import pytest
from PySide6.QtCore import Qt, QThread
from PySide6.QtWidgets import QApplication

from qlora_gui.ui.workers import event_worker, jobs
from qlora_gui.ui.workers.event_worker import EventWorker
from qlora_gui.ui.workers.playground_events import CommandFailed, Idle
from qlora_gui.ui.workers.playground_worker import GenerationWorker

LONG = 60_000  # ms; never reached when things work


@pytest.fixture(autouse=True)
def no_dangling_threads(qtbot):
    yield
    qtbot.waitUntil(lambda: not jobs.running_threads(), timeout=10_000)


class Counting(EventWorker):
    """Posts 0, 1, 2… up to `count`, then ("ended", count)."""

    def __init__(self, count: int):
        super().__init__()
        self.count = count

    def run(self) -> None:
        for n in range(self.count):
            self.post(n)
        self.post(("ended", self.count))


class Ticking(EventWorker):
    """Posts a tick and waits until the GUI has taken it, until a stop is asked; then says how many it posted."""

    def __init__(self):
        super().__init__()
        self.taken = threading.Semaphore(0)

    def run(self) -> None:
        ticks = 0
        while not self.isInterruptionRequested():
            self.post("tick")
            ticks += 1
            self.taken.acquire()
        self.post(("ended", ticks))


def test_events_arrive_in_order_on_the_gui_thread(qtbot):
    worker = Counting(500)
    received, on_gui_thread = [], set()

    def receive(event):
        received.append(event)
        on_gui_thread.add(QThread.currentThread() is QApplication.instance().thread())

    # A direct connection runs the receiver in the emitting thread: this checks where `event` is emitted.
    worker.event.connect(receive, Qt.ConnectionType.DirectConnection)
    with qtbot.waitSignal(worker.event, timeout=LONG, check_params_cb=lambda e: e == ("ended", 500)):
        worker.start()
    assert received == [*range(500), ("ended", 500)]
    assert on_gui_thread == {True}


def test_the_last_events_arrive_when_the_thread_ends(qtbot, monkeypatch):
    monkeypatch.setattr(event_worker, "DRAIN_MS", 3_600_000)  # the timer never fires during this test
    worker = Counting(3)
    received = []
    worker.event.connect(received.append)
    with qtbot.waitSignal(worker.event, timeout=LONG, check_params_cb=lambda e: e == ("ended", 3)):
        worker.start()
    assert received == [0, 1, 2, ("ended", 3)]


def test_stop_is_honoured_by_run_at_its_next_check(qtbot):
    worker = Ticking()
    received = []

    def take(event):
        received.append(event)
        if event == "tick":
            if len(received) == 3:
                worker.stop()  # asked before the worker goes on, so it posts no fourth tick
            worker.taken.release()

    worker.event.connect(take)
    with qtbot.waitSignal(worker.finished, timeout=LONG):
        worker.start()
    qtbot.waitUntil(lambda: received[-1:] == [("ended", 3)], timeout=LONG)
    assert received == ["tick", "tick", "tick", ("ended", 3)]  # run() ended itself and said so


def test_the_playground_worker_reports_a_failed_command_then_frees_itself(qtbot):
    worker = GenerationWorker()
    received = []
    worker.event.connect(lambda e: received.append((e, worker.busy)))
    worker.send("generate", prompt="hi", system="", template=True, temperature=0.0, top_p=1.0, max_tokens=4, seed=0)
    assert worker.busy
    with qtbot.waitSignal(worker.event, timeout=LONG, check_params_cb=lambda e: isinstance(e, Idle)):
        pass
    assert [type(e) for e, _ in received] == [CommandFailed, Idle]
    assert received[0][0].command == "generate" and received[0][0].message == "no model is loaded yet; pick a run first"
    assert [busy for _, busy in received] == [True, False]  # cleared before the view hears of the Idle
    received.clear()
    worker.send("sample")  # not a busy command: no Idle follows
    assert not worker.busy
    with qtbot.waitSignal(worker.event, timeout=LONG):
        pass
    assert received == [(CommandFailed("sample", "no validation sample: the run does not name its data"), False)]
    worker.shutdown()  # the loop waits for a command; the stop wakes it
    assert worker.isFinished()
    worker.send("sample")  # after shutdown, commands are dropped
    assert not worker.isRunning()
