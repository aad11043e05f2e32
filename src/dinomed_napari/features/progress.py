"""Adapters between extraction's ``progress(done, total)`` / ``cancel()`` callbacks and terminals."""

from __future__ import annotations

import signal
import sys
import threading
from contextlib import contextmanager


class TqdmProgress:
    """A ``progress(done, total)`` callback drawing a tqdm bar (slices already cached count as done).

    Use as a context manager so the bar is closed on errors and cancellation too.
    """

    def __init__(self, desc: str = "features", unit: str = "slice", **tqdm_kwargs):
        self.desc, self.unit, self.kwargs = desc, unit, tqdm_kwargs
        self.bar = None

    def __call__(self, done: int, total: int) -> None:
        if self.bar is None:
            from tqdm.auto import tqdm

            # Resumed runs start the bar at the cached count, so the rate shows only new work.
            self.bar = tqdm(total=total, initial=done, desc=self.desc, unit=self.unit, **self.kwargs)
        self.bar.total = total
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def __enter__(self) -> TqdmProgress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@contextmanager
def sigint_cancels():
    """Turn the first Ctrl-C into a ``cancel()`` flag checked between batches; a second one interrupts.

    Yields a zero-argument callable for ``extract_features(cancel=...)``. Outside the main thread (where
    signal handlers cannot be set) it yields a callable that never cancels.
    """
    hit = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield hit.is_set
        return

    def handler(signum, frame):
        if hit.is_set():
            raise KeyboardInterrupt
        hit.set()
        print("\ncancelling after the current batch (Ctrl-C again to abort now)", file=sys.stderr, flush=True)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield hit.is_set
    finally:
        signal.signal(signal.SIGINT, previous)
