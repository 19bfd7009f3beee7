"""The background writer: takes finished batches from a bounded queue and appends them to the store.

It never runs the model; the engine never touches the store while it runs.
"""

from __future__ import annotations

import errno
import queue
import threading
from collections.abc import Callable

from attnx.errors import StoreError
from attnx.store import StoreWriter
from attnx.store.location import _first_line

_STOP = object()


class BackgroundSink:
    """Hands items to ``append`` on one background thread; ``put`` blocks when ``depth`` items wait. A failure
    in ``append`` is re-raised by the next ``put`` or by ``close``."""

    def __init__(self, append: Callable[[object], None], depth: int, name: str = "attnx-writer") -> None:
        self.append = append
        self.queue: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            item = self.queue.get()
            if item is _STOP:
                return
            if self.error is not None:
                continue  # drain without writing after a failure
            try:
                self.append(item)
            except BaseException as exc:  # surfaced to the engine thread by put()/close()
                self.error = exc

    def _raise(self) -> None:
        if self.error is not None:
            raise self.error

    def put(self, item: object) -> None:
        self._raise()
        self.queue.put(item)

    def close(self) -> None:
        """Wait for every queued item to be handed on; re-raise a failure."""
        self.queue.put(_STOP)
        self.thread.join()
        self._raise()


class AsyncWriter(BackgroundSink):
    """One thread owns the :class:`StoreWriter` (and so every chunk); ``put`` blocks when ``depth`` batches wait."""

    def __init__(self, writer: StoreWriter, depth: int) -> None:
        self.writer = writer
        super().__init__(writer.append, depth)

    def _raise(self) -> None:
        if self.error is None:
            return
        exc = self.error
        where = self.writer.path
        done = self.writer.commit.records
        if (isinstance(exc, OSError) and exc.errno == errno.ENOSPC) or "No space left" in str(exc):
            raise StoreError(f"{where}: disk full; {done} records are committed and the run can be resumed") from exc
        if isinstance(exc, OSError):
            raise StoreError(f"{where}: cannot write ({exc.strerror or exc}); {done} records are committed") from exc
        if isinstance(exc, StoreError):
            raise exc
        raise StoreError(
            f"{where}: writer failed ({type(exc).__name__}: {_first_line(exc)}); {done} records are committed"
        ) from exc
