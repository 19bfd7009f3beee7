"""Run a producer on a background thread, a bounded number of items ahead of its consumer."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
_DONE = object()


def read_ahead(produce: Callable[[], Iterable[T]], ahead: int, name: str) -> Iterator[T]:
    """Yield the items of ``produce()``, computed on a daemon thread at most ``ahead`` items early.

    An exception raised by the producer is re-raised in the consumer at the point it would have been
    reached; a consumer that stops early stops the producer after its current item.
    """
    out: queue.Queue = queue.Queue(maxsize=max(1, ahead))
    stop = threading.Event()

    def work() -> None:
        try:
            for item in produce():
                if stop.is_set():
                    return
                out.put(item)
            out.put(_DONE)
        except BaseException as exc:  # handed to the consumer, which re-raises it
            out.put(exc)

    thread = threading.Thread(target=work, name=name, daemon=True)
    thread.start()
    try:
        while True:
            item = out.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            try:
                out.get(timeout=0.05)
            except queue.Empty:
                pass
