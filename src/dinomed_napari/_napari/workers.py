"""Off-GUI-thread plumbing: napari thread workers, progress relays, cancel flags and debouncing.

Core calls run in ``napari.qt.threading`` workers; results come back to the GUI thread through the
worker's ``returned`` signal, errors through ``errored`` (shown by the caller). Every job gets a
:class:`CancelFlag`; a cancelled job's late result is dropped, and :func:`wait_for_workers` lets a
closing widget wait for its threads so that none emits into deleted Qt objects.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from napari.qt.threading import create_worker
from qtpy.QtCore import QObject, QThreadPool, QTimer, Signal


class Relay(QObject):
    """Signals emitted from a worker thread and delivered on the GUI thread (queued connection)."""

    progress = Signal(int, int)
    partial = Signal(object)


def start_worker(func: Callable, *args: Any, on_returned: Callable | None = None,
                 on_error: Callable | None = None, on_finished: Callable | None = None, **kwargs: Any):
    """Run ``func(*args, **kwargs)`` in a napari thread worker and wire its signals; returns the worker."""
    # Connections go through ``_connect``: only then does the worker skip re-raising errors that
    # ``on_error`` already handles.
    connect = {"returned": on_returned, "errored": on_error, "finished": on_finished}
    return create_worker(func, *args, _start_thread=True,
                         _connect={k: v for k, v in connect.items() if v is not None}, **kwargs)


def wait_for_workers(msecs: int = 3000) -> bool:
    """Wait (GUI thread blocked) up to ``msecs`` for every thread worker to end; True if all did."""
    return bool(QThreadPool.globalInstance().waitForDone(int(msecs)))


class CancelFlag:
    """A thread-safe cancel request, passed to the core as ``cancel=flag`` (a callable -> bool)."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self) -> None:
        self._event.set()

    def clear(self) -> None:
        self._event.clear()

    def __call__(self) -> bool:
        return self._event.is_set()


class LatestJob:
    """Run jobs off the GUI thread one at a time; requests made meanwhile collapse into the latest one.

    Used for live updates (retrain after each stroke, preview after each slider move): the GUI thread
    never waits, and a burst of requests costs at most one extra run with the newest inputs. A job is
    ``job(cancel)``; :meth:`cancel` sets the running job's flag and drops its result and the waiting job.
    """

    def __init__(self, on_returned: Callable, on_error: Callable, on_idle: Callable | None = None):
        self._on_returned = on_returned
        self._on_error = on_error
        self._on_idle = on_idle
        self._pending: Callable | None = None
        self._flag = CancelFlag()
        self.worker = None

    @property
    def busy(self) -> bool:
        return self.worker is not None

    @property
    def cancelled(self) -> bool:
        """The latest job was cancelled (its queued progress / partial signals should be ignored)."""
        return self._flag()

    def submit(self, job: Callable[[CancelFlag], Any]) -> None:
        """Run ``job(cancel)`` now, or after the running one (replacing any job already waiting)."""
        if self.busy:
            self._pending = job
            return
        flag = self._flag = CancelFlag()
        self.worker = start_worker(job, flag, on_returned=lambda out: flag() or self._on_returned(out),
                                   on_error=lambda exc: flag() or self._on_error(exc),
                                   on_finished=self._finished)

    def cancel(self) -> bool:
        """Stop the running job (its result is dropped) and forget the waiting one; True if one ran."""
        self._pending = None
        self._flag.set()
        return self.busy

    def close(self) -> bool:
        """:meth:`cancel` and forget every callback: the owner's Qt widgets are going away, and a late
        ``finished`` must not touch them (PyQt aborts the process on an error in a slot)."""
        running = self.cancel()
        self._on_idle = None
        return running

    def _finished(self) -> None:
        self.worker = None
        job, self._pending = self._pending, None
        if job is not None:
            self.submit(job)
        elif self._on_idle is not None:
            self._on_idle()


class Debouncer:
    """Call ``callback`` once, ``delay_ms`` after the last :meth:`trigger` (a burst of events -> one call)."""

    def __init__(self, callback: Callable[[], Any], delay_ms: int = 250, parent: Any = None):
        self._timer = QTimer(parent)  # parent: the widget, so that it never fires into a deleted one
        self._timer.setSingleShot(True)
        self._timer.setInterval(int(delay_ms))
        self._timer.timeout.connect(callback)

    def trigger(self, *_: Any) -> None:
        self._timer.start()

    def stop(self) -> None:
        self._timer.stop()
