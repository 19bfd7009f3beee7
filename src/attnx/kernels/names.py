"""The names and order of the per-map row-sum features, without the kernels (no numba import): the extraction
engine writes ``--stats-only`` stores in this order and must not pay for compiling the analysis stack."""

from __future__ import annotations

MAP_FEATURES: tuple[str, ...] = (
    "cls", "sep", "sep_max", "punct", "self", "prev", "next", "distance",
    "entropy", "cls_entropy", "max_weight", "own_segment", "col_max", "col_top3",
    "band2", "col_sq", "seg_block", "map_max",
)
