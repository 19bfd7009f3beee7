"""The replay backend: real maps at host speed, so the host side of a run can be measured without a device.

The real model runs once, on a sample of the input (:func:`sample_maps`); the backend then answers every batch
with, for each record of length ``l``, a real map of that length made from the sample: the map of a sampled
record of exactly that length where there is one, else the map of the nearest longer sampled record cropped to
its first ``l`` queries and keys, else (longer than every sampled record) the longest one resampled to
``l x l`` by nearest index; cropped and resampled rows are renormalised to sum to 1 (in float32) before they are
encoded to the stored dtype. Records of one length take the sampled maps of that length in turn. So the codec
sees a real model's values and compressibility, never all-equal or random maps. Implements the same
:class:`attnx.engine.backends.base.Backend` protocol as the torch and ONNX backends; ``cpu_seconds`` is its
own cost (the stand-in for the device, kept apart from the host's).
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import numpy as np

from attnx.engine.backends.base import Done, PackedBatch, TokenBatch, collate
from attnx.stored_dtypes import encode


def sample_maps(
    backend: object, windows: Iterable[object], pad_id: int, limit: int, batch: int = 16
) -> list[np.ndarray]:
    """Real float32 maps ``(layers*heads, l, l)`` of up to ``limit`` records of ``windows`` (tokenized), run
    through ``backend`` (a float32 torch or ONNX backend) in length-sorted batches of ``batch``."""
    out: list[np.ndarray] = []
    for window in windows:
        take = min(len(window), limit - len(out))
        order = np.argsort(window.length[:take], kind="stable")
        for lo in range(0, take, batch):
            idx = order[lo : lo + batch]
            packed = backend.submit(collate(window.ids, window.offsets, window.segment, idx, pad_id)).result()
            flat = np.asarray(packed.attn, np.float32)
            lengths = packed.lengths.astype(np.int64)
            maps = len(flat) // int((lengths**2).sum())  # kept layers x kept heads
            at = 0
            for l in lengths:
                n = maps * int(l * l)
                out.append(flat[at : at + n].reshape(maps, int(l), int(l)))
                at += n
        if len(out) >= limit:
            break
    return out


def _renormalised(m: np.ndarray) -> np.ndarray:
    rows = m.sum(-1, keepdims=True)
    return m / np.where(rows > 0, rows, 1)


def replay_map(maps_by_length: dict[int, list[np.ndarray]], l: int, turn: int) -> np.ndarray:
    """A real ``(layers*heads, l, l)`` float32 map for a record of length ``l`` (the ``turn``-th of its length)."""
    exact = maps_by_length.get(l)
    if exact:
        return exact[turn % len(exact)]
    longer = [k for k in maps_by_length if k > l]
    if longer:
        src = maps_by_length[min(longer)]
        return _renormalised(src[turn % len(src)][:, :l, :l])
    longest = maps_by_length[max(maps_by_length)]
    m = longest[turn % len(longest)]
    pick = np.minimum((np.arange(l) * m.shape[-1]) // l, m.shape[-1] - 1)
    return _renormalised(m[:, pick][:, :, pick])


class ReplayBackend:
    """Answers batches with real maps replayed from a sample (see the module docstring)."""

    name = "replay"

    def __init__(self, sampled: list[np.ndarray], dtype: str, distinct_per_length: int = 8) -> None:
        if not sampled:
            raise ValueError("the replay backend needs at least one sampled map")
        self.dtype = dtype
        self.maps_by_length: dict[int, list[np.ndarray]] = {}
        for m in sampled:
            self.maps_by_length.setdefault(int(m.shape[-1]), []).append(m)
        self.sampled_lengths = sorted(self.maps_by_length)
        self.distinct = distinct_per_length
        self._encoded: dict[tuple[int, int], np.ndarray] = {}  # (length, turn) -> flat stored values
        self._turn: dict[int, int] = {}
        self.cpu_seconds = 0.0  # this backend's own CPU time (thread time of the calling thread)

    def _record(self, l: int) -> np.ndarray:
        turn = self._turn.get(l, 0)
        self._turn[l] = turn + 1
        key = (l, turn % self.distinct)
        flat = self._encoded.get(key)
        if flat is None:
            flat = self._encoded[key] = encode(replay_map(self.maps_by_length, l, key[1]), self.dtype).ravel()
        return flat

    def submit(self, batch: TokenBatch) -> Done:
        t = time.thread_time()
        lengths = batch.lengths
        attn = np.concatenate([self._record(int(l)) for l in lengths])
        self.cpu_seconds += time.thread_time() - t
        return Done(PackedBatch(attn=attn, lengths=lengths))

    def close(self) -> None:
        self._encoded.clear()
