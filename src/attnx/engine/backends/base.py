"""What every backend takes and returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class TokenBatch:
    """A padded batch of ``B`` records, ``T`` = longest length in it."""

    input_ids: np.ndarray  # (B, T) int64, padded with the pad id
    attention_mask: np.ndarray  # (B, T) int64, 1 for real tokens
    token_type_ids: np.ndarray  # (B, T) int64
    lengths: np.ndarray  # (B,) int32 real lengths
    len_a: np.ndarray | None = None  # (B,) int32 tokens of segment A (for --stats-only)
    sep: np.ndarray | None = None  # (B, T) bool special tokens after position 0 (for --stats-only)
    punct: np.ndarray | None = None  # (B, T) bool punctuation that is not special (for --stats-only)


@dataclass(frozen=True)
class PackedBatch:
    """The real part of every map of a batch, packed: record b's ``(layers, heads, l_b, l_b)`` back to back."""

    attn: np.ndarray  # (sum_b layers*heads*l_b^2,) store dtype
    lengths: np.ndarray  # (B,) int32


class Pending(Protocol):
    def result(self) -> PackedBatch: ...


class Backend(Protocol):
    """Runs batches; ``submit`` may return before the maps reach the host (CUDA), ``result`` waits."""

    name: str

    def submit(self, batch: TokenBatch) -> Pending: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Done:
    """A Pending that is already complete (CPU backends)."""

    packed: PackedBatch

    def result(self) -> PackedBatch:
        return self.packed


def collate(
    ids: np.ndarray,
    offsets: np.ndarray,
    segment: np.ndarray,
    index: np.ndarray,
    pad_id: int,
    special: np.ndarray | None = None,
    punct: np.ndarray | None = None,
    len_a: np.ndarray | None = None,
) -> TokenBatch:
    """Gather records ``index`` of a window's flat token arrays into a padded :class:`TokenBatch`.

    With ``special``, ``punct`` and ``len_a`` (window arrays) it also fills the masks --stats-only needs.
    """
    starts = offsets[index]
    lengths = (offsets[index + 1] - starts).astype(np.int32)
    b, t = len(index), int(lengths.max())
    pos = np.arange(t)
    real = pos[None, :] < lengths[:, None]  # (B, T)
    src = (starts[:, None] + pos[None, :])[real]
    input_ids = np.full((b, t), pad_id, np.int64)
    input_ids[real] = ids[src]
    token_type = np.zeros((b, t), np.int64)
    token_type[real] = segment[src]
    extra = {}
    if special is not None and punct is not None and len_a is not None:
        sp = np.zeros((b, t), bool)
        sp[real] = special[src]
        pu = np.zeros((b, t), bool)
        pu[real] = punct[src]
        extra = dict(len_a=len_a[index].astype(np.int32), sep=sp & (pos[None, :] > 0), punct=pu & ~sp)
    return TokenBatch(input_ids, real.astype(np.int64), token_type, lengths, **extra)


def packed_offsets(lengths: np.ndarray, layers: int, heads: int) -> np.ndarray:
    """(B+1,) int64 element offsets of each record in a :class:`PackedBatch`."""
    from attnx.store import record_sizes

    return np.concatenate([[0], np.cumsum(record_sizes(lengths, layers, heads, None))])
