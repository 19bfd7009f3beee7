"""heap_trimmer: trims after every call by default, or once enough bytes have passed (analysis: every 512 MB)."""

from __future__ import annotations

import ctypes

import pytest

from attnx import memory
from attnx.memory import heap_trimmer


class FakeLibc:
    def __init__(self) -> None:
        self.calls: list[int] = []

        def malloc_trim(pad: int) -> int:
            self.calls.append(pad)
            return 1

        self.malloc_trim = malloc_trim


@pytest.fixture
def libc(monkeypatch: pytest.MonkeyPatch) -> FakeLibc:
    fake = FakeLibc()
    monkeypatch.setattr(memory, "_libc", lambda: fake)  # the one place attnx.memory loads the C library
    return fake


def test_default_trims_on_every_call(libc: FakeLibc) -> None:
    trim = heap_trimmer()
    for _ in range(3):
        trim()
    assert libc.calls == [0, 0, 0]


def test_trims_once_every_bytes_have_passed(libc: FakeLibc) -> None:
    trim = heap_trimmer(every_bytes=100)
    for nbytes in (40, 40, 40, 10, 50, 99):  # 120 >= 100 -> trim; then 10 + 50 = 60, + 99 = 159 -> trim
        trim(nbytes)
    assert libc.calls == [0, 0]
    trim(0)
    assert len(libc.calls) == 2


def test_no_libc_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(name: str) -> None:
        raise OSError("no libc")

    monkeypatch.setattr(ctypes, "CDLL", missing)
    memory._libc.cache_clear()  # looked up once per process: look again, without a C library
    try:
        assert memory._libc() is None
        heap_trimmer(every_bytes=1)(5)
    finally:
        memory._libc.cache_clear()

