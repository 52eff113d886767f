"""The base of the UI's long-running workers: `run()` in its own thread posts events; the GUI thread gets them.

Only `run()` executes in the new thread; the QThread object, its signals and
its timer live on the GUI thread. The worker thread never emits a Qt signal
with a Python object in it (PySide6 6.8+ can crash on those: PYSIDE-3124): it
puts each event on a thread-safe queue, and a GUI-thread timer drains the queue
every DRAIN_MS, and once more when the thread has finished, so the last events
are never lost. Stopping is cooperative: `stop()` sets Qt's interruption flag,
which `run()` checks between units of work, and subclasses extend `stop()` to
tell the work in progress.
"""

from __future__ import annotations

import queue

from PySide6.QtCore import QObject, QThread, QTimer, Signal, Slot

from .jobs import register

DRAIN_MS = 40  # how late an event may reach the view: 25 updates a second keep streamed tokens smooth


class EventWorker(QThread):
    """A thread whose events arrive on the GUI thread, in the order `post` queued them, as `event(object)`."""

    # Emitted only by `_drain`, which runs on the GUI thread: a same-thread emission, a direct call that
    # never queues a Python object across threads, so the typed event objects themselves are safe here.
    event = Signal(object)

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self._events: queue.SimpleQueue = queue.SimpleQueue()
        self._drain_timer = QTimer(self)
        self._drain_timer.setInterval(DRAIN_MS)
        self._drain_timer.timeout.connect(self._drain)
        self.finished.connect(self._deliver_remaining)
        register(self)

    def start(self, priority: QThread.Priority = QThread.Priority.InheritPriority) -> None:
        self._drain_timer.start()
        super().start(priority)

    def stop(self) -> None:
        """GUI thread: ask `run()` to end at its next safe point; it is never cut off mid-work."""
        self.requestInterruption()

    def post(self, event: object) -> None:
        """Worker thread (or any): queue an event for the GUI thread."""
        self._events.put(event)

    def _deliver(self, event: object) -> None:
        """GUI thread: hand one event to the receivers; a subclass may update its own state first."""
        self.event.emit(event)

    @Slot()
    def _drain(self) -> None:
        """GUI thread: deliver every event that has arrived, in order."""
        while True:
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                return
            self._deliver(event)

    @Slot()
    def _deliver_remaining(self) -> None:
        """GUI thread, once the thread has ended: no more timer, and what it posted last is delivered now."""
        self._drain_timer.stop()
        self._drain()
