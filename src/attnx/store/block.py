"""What the reader hands the kernels: a contiguous run of stored records as plain numpy arrays."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class AttentionBlock:
    """A contiguous run of stored records (physical order), as plain numpy arrays for the kernels.

    ``b`` records; ``attn`` holds each record's ``(layers, heads, l, l)`` maps back to back in the stored
    dtype (uint8 means p * 255; use :meth:`maps_f32` or ``scale``). Token arrays are flat, ``tok_offsets``
    indexes them per record; word arrays likewise (CoNLL-U stores only, else empty).
    """

    first: int  # physical position of the first record
    record_ids: np.ndarray  # (b,) int64, input-order ids
    lengths: np.ndarray  # (b,) int32
    len_a: np.ndarray  # (b,) int32, tokens up to and including the first separator
    attn: np.ndarray  # (sum layers*heads*l^2,) stored dtype
    attn_offsets: np.ndarray  # (b+1,) int64 offsets into attn
    scale: float  # multiply attn by this to get probabilities (1/255 for uint8, else 1)
    token_ids: np.ndarray  # (T,) int32
    segment: np.ndarray  # (T,) int8
    special: np.ndarray  # (T,) bool
    punct: np.ndarray  # (T,) bool
    word: np.ndarray  # (T,) int32
    tok_offsets: np.ndarray  # (b+1,) int64
    n_layers: int = 0  # layers and heads per record's maps
    n_heads: int = 0
    word_head: np.ndarray = field(default_factory=lambda: np.empty(0, np.int32))  # (W,)
    word_deprel: np.ndarray = field(default_factory=lambda: np.empty(0, np.int16))  # (W,)
    word_offsets: np.ndarray = field(default_factory=lambda: np.zeros(1, np.int64))  # (b+1,)

    def __len__(self) -> int:
        return len(self.record_ids)

    def maps_f32(self) -> np.ndarray:
        """All maps as float32 probabilities, flat like ``attn``."""
        if self.scale != 1.0:
            return self.attn.astype(np.float32) * np.float32(self.scale)
        return self.attn.astype(np.float32, copy=False)

    def record_maps(self, k: int) -> np.ndarray:
        """Record ``k`` of the block as float32 probabilities ``(layers, heads, l, l)`` (query, key)."""
        l = int(self.lengths[k])
        flat = self.attn[self.attn_offsets[k] : self.attn_offsets[k + 1]]
        return (flat.astype(np.float32) * np.float32(self.scale)).reshape(self.n_layers, self.n_heads, l, l)
