"""attnx.threads.ordered_map: input order, bounded work in flight, real concurrency, errors at their turn."""

from __future__ import annotations

import random
import threading
import time

import pytest

from attnx.threads import ordered_map


def test_order_kept_with_uneven_work():
    rng = random.Random(0)
    delays = [rng.random() * 0.01 for _ in range(40)]

    def fn(i: int) -> int:
        time.sleep(delays[i])
        return i * i

    assert list(ordered_map(fn, range(40), threads=3)) == [i * i for i in range(40)]
    assert list(ordered_map(fn, range(5), threads=1)) == [i * i for i in range(5)]


def test_workers_run_concurrently():
    barrier = threading.Barrier(2, timeout=5)  # passes only if two calls are running at the same time

    def fn(i: int) -> int:
        barrier.wait()
        return i

    assert list(ordered_map(fn, range(6), threads=2)) == list(range(6))


def test_bounded_in_flight():
    started = []
    gen = ordered_map(lambda i: started.append(i) or i, range(100), threads=2, ahead=3)
    assert next(gen) == 0
    time.sleep(0.05)
    assert len(started) <= 4  # ``ahead`` submitted, one consumed: never the whole input
    gen.close()


def test_error_raised_at_its_turn():
    def fn(i: int) -> int:
        if i == 3:
            raise ValueError("bad chunk 3")
        return i

    got = []
    with pytest.raises(ValueError, match="bad chunk 3"):
        for x in ordered_map(fn, range(10), threads=2):
            got.append(x)
    assert got == [0, 1, 2]
