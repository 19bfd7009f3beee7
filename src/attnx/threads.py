"""Run a producer on a background thread, a bounded number of items ahead of its consumer; or map on a pool."""

from __future__ import annotations

import collections
import contextlib
import functools
import os
import queue
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
U = TypeVar("U")
_DONE = object()


def usable_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def default_io_threads(cores: int | None = None) -> int:
    """I/O threads the machine can spare: every core but two (the engine and the writer thread), 1..16."""
    cores = usable_cores() if cores is None else cores
    return max(1, min(16, cores - 2))


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


def ordered_map(fn: Callable[[T], U], items: Iterable[T], threads: int, ahead: int | None = None) -> Iterator[U]:
    """``map(fn, items)`` on ``threads`` worker threads, yielded in input order, at most ``ahead`` in flight.

    For decoding stored chunks on several cores: blosc, zstd and :func:`attnx.stored_dtypes.decode` release the
    GIL, so ``fn`` = read one or two chunks and decode them to float32 runs in parallel; on the shared
    2-core box this was the fastest float32 read path (1.2-2.4x serial; benchmarks/RESULTS.md, issue 12).
    ``ahead`` (default ``2 * threads``) bounds memory to about ``ahead + 1`` results. ``threads <= 1`` runs
    in the caller's thread. An exception in ``fn`` is raised at its item's turn; a consumer that stops
    early cancels the items not yet started.
    """
    if threads <= 1:
        yield from map(fn, items)
        return
    ahead = max(1, ahead if ahead is not None else 2 * threads)
    pending: collections.deque[Future[U]] = collections.deque()
    with ThreadPoolExecutor(threads, thread_name_prefix="attnx-ordered-map") as pool:
        try:
            for item in items:
                pending.append(pool.submit(fn, item))
                if len(pending) >= ahead:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for f in pending:
                f.cancel()


def keeps_thread_settings(fn: Callable[..., U]) -> Callable[..., U]:
    """Decorator: the caller's torch intra-op thread count is as it was after ``fn`` returns.

    numba's OpenMP threading layer sets the process's OpenMP thread count when a parallel kernel first runs,
    which is what ``torch.get_num_threads`` reports; a library call must not change the caller's setting.
    """

    @functools.wraps(fn)
    def wrapper(*args: object, **kwargs: object) -> U:
        torch = sys.modules.get("torch")
        before = torch.get_num_threads() if torch is not None else None
        try:
            return fn(*args, **kwargs)
        finally:
            if before is not None and torch.get_num_threads() != before:
                torch.set_num_threads(before)

    return wrapper


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """torch's intra-op threads set to ``n`` inside the block and restored after; ``n`` 0: torch left alone (and
    not imported: a run on ONNX Runtime never needs it)."""
    if not n:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
