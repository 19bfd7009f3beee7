"""A clean interpreter exit after Icechunk reads: no I/O thread may be inside Python when finalisation starts.

Icechunk runs its I/O on Rust (tokio) threads and hands each result to zarr's asyncio loop from that thread
(pyo3-async-runtimes: ``loop.call_soon_threadsafe``, whose ``_write_to_self`` releases the GIL for a socket
``send``). The loop can run the result callback before that ``send`` returns, so the main thread may read its
result, finish the script and start finalising while the Rust thread is still inside ``call_soon_threadsafe``.
When that thread then asks for the GIL, CPython 3.11 calls ``pthread_exit`` on it, the forced unwind reaches
Rust frames that cannot unwind and the process aborts (SIGABRT, rc 134, no message): 1 run in 16 to 33 of
``import attnx; s = attnx.open_store(p); print(len(s))`` under a CPU hog (core dump: the aborting thread in
``take_gil <- sock_send <- call_soon_threadsafe <- pyo3_async_runtimes::set_result <- tokio``).

The guard, registered when :mod:`attnx.store` is imported (after zarr, so it runs before zarr's own exit
handler stops the loop), waits at exit until no thread that Python did not start is executing Python code,
and lets zarr tasks left pending by a failed read finish. A thread in that tail holds a Python frame until it
returns to Rust, so the wait is exact; it is bounded (5 s) and costs nothing when no such thread exists.
"""

from __future__ import annotations

import asyncio
import atexit
import sys
import threading
import time

WAIT_S = 5.0


def foreign_threads_in_python() -> list[int]:
    """Idents of threads Python did not start (Icechunk's Rust threads) that are executing Python code now."""
    ours = {t.ident for t in threading.enumerate() if not isinstance(t, threading._DummyThread)}
    me = threading.get_ident()
    return [ident for ident in sys._current_frames() if ident not in ours and ident != me]


def _settle_zarr_tasks(timeout: float) -> None:
    """Let zarr reads still in flight on its loop (after a failed read) finish, so none completes later."""
    from zarr.core import sync as zsync

    loop = zsync.loop[0]
    if loop is None or loop.is_closed() or not loop.is_running():
        return

    async def settle() -> None:
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)

    try:
        asyncio.run_coroutine_threadsafe(settle(), loop).result(timeout=timeout + 1)
    except Exception:  # noqa: BLE001, S110 - exiting anyway
        pass


def wait_for_io_threads(timeout: float = WAIT_S) -> None:
    """At exit: settle zarr's pending reads, then wait (releasing the GIL) until no foreign thread runs Python."""
    _settle_zarr_tasks(timeout)
    deadline = time.monotonic() + timeout
    while foreign_threads_in_python() and time.monotonic() < deadline:
        time.sleep(0.001)


atexit.register(wait_for_io_threads)
