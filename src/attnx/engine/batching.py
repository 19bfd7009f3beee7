"""Length-sorted dynamic batches under a budget on the attention bytes a batch produces.

Pure policy: works on lengths only, never touches tensors.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class BatchPlan:
    """A window's batches: ``order`` is the window's physical order, cut into consecutive batches."""

    order: np.ndarray  # (n,) int64 window-local indices, stable-sorted by length
    bounds: np.ndarray  # (batches+1,) int64 batch j is order[bounds[j]:bounds[j+1]]

    def __len__(self) -> int:
        return len(self.bounds) - 1

    def batch(self, j: int) -> np.ndarray:
        return self.order[self.bounds[j] : self.bounds[j + 1]]


def attention_bytes(batch: int, pad_length: int, layers: int, heads: int, itemsize: int = 4) -> int:
    """Bytes of attention a padded batch produces: batch x layers x heads x L_pad^2 x itemsize."""
    return batch * layers * heads * pad_length * pad_length * itemsize


def plan_batches(lengths: np.ndarray, budget_bytes: int, layers: int, heads: int, max_tokens: int) -> BatchPlan:
    """Sort by length (stable, so the plan is deterministic) and cut greedily into batches.

    A batch grows while ``attention_bytes(batch, L_pad, layers, heads) <= budget_bytes`` and
    ``batch * L_pad <= max_tokens``, ``L_pad`` being its longest (= last) length. Every batch holds at
    least one record, so one very long sentence still runs alone.
    """
    order = np.argsort(lengths, kind="stable").astype(np.int64)
    sorted_len = np.asarray(lengths, np.int64)[order]
    bounds = [0]
    start = 0
    n = len(order)
    per_row = layers * heads * 4
    while start < n:
        stop = start + 1
        while stop < n:
            pad = int(sorted_len[stop])
            count = stop - start + 1
            if count * per_row * pad * pad > budget_bytes or count * pad > max_tokens:
                break
            stop += 1
        bounds.append(stop)
        start = stop
    return BatchPlan(order=order, bounds=np.asarray(bounds, np.int64))
