"""Mergeable partial results of ``attnx analyze``: sums and counts, never means (merge = addition).

Partials from chunks, processes or machines over disjoint records of the same store combine with
:meth:`Partial.merge`; :meth:`Partial.save` / :meth:`Partial.load` move them between processes as ``.npz``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from attnx.kernels.names import NF, PATTERNS


@dataclass
class Partial:
    """Sums over the records analysed so far. ``L`` layers, ``H`` heads, ``M = L*H``, ``R`` relations."""

    n_layers: int
    n_heads: int
    records: int = 0
    rows: float = 0.0  # query rows (sum of l)
    attn_bytes: int = 0  # stored attention bytes read
    feature_sums: np.ndarray = None  # (L, H, NF) row sums of every feature (own_segment: pair rows only)
    pair_rows: float = 0.0  # query rows of sentence-pair records
    pattern_counts: np.ndarray = None  # (L, H, 5) int64 maps per pattern type
    pattern_uncertain: np.ndarray = None  # (L, H) int64 maps whose label probability is below the model's cut
    pattern_prob_sum: np.ndarray = None  # (L, H) float64 sum of the chosen labels' probabilities
    sim_sum: dict = field(default_factory=dict)  # metric -> (M, M) float64
    sim_count: dict = field(default_factory=dict)  # metric -> float (records for cosine, rows for js)
    rel_count: np.ndarray = None  # (R,) int64
    rel_correct: np.ndarray = None  # (R, M) int64
    rel_offset: np.ndarray = None  # (R, 2K+1) int64

    def __post_init__(self) -> None:
        if self.feature_sums is None:
            self.feature_sums = np.zeros((self.n_layers, self.n_heads, NF))
        if self.pattern_counts is None:
            self.pattern_counts = np.zeros((self.n_layers, self.n_heads, len(PATTERNS)), np.int64)
        if self.pattern_uncertain is None:
            self.pattern_uncertain = np.zeros((self.n_layers, self.n_heads), np.int64)
        if self.pattern_prob_sum is None:
            self.pattern_prob_sum = np.zeros((self.n_layers, self.n_heads))

    def add_relations(self, count: np.ndarray, correct: np.ndarray, offset: np.ndarray) -> None:
        if self.rel_count is None:
            self.rel_count, self.rel_correct, self.rel_offset = count.copy(), correct.copy(), offset.copy()
        else:
            self.rel_count += count
            self.rel_correct += correct
            self.rel_offset += offset

    def add_similarity(self, metric: str, acc: np.ndarray, count: float) -> None:
        if metric in self.sim_sum:
            self.sim_sum[metric] += acc
            self.sim_count[metric] += count
        else:
            self.sim_sum[metric] = acc.copy()
            self.sim_count[metric] = count

    def merge(self, other: Partial) -> Partial:
        """A new partial holding the sums of both (they must come from stores of the same shape)."""
        if (self.n_layers, self.n_heads) != (other.n_layers, other.n_heads):
            raise ValueError("cannot merge partials of different layer x head shapes")
        out = Partial(self.n_layers, self.n_heads, self.records + other.records, self.rows + other.rows,
                      self.attn_bytes + other.attn_bytes, self.feature_sums + other.feature_sums,
                      self.pair_rows + other.pair_rows, self.pattern_counts + other.pattern_counts,
                      self.pattern_uncertain + other.pattern_uncertain, self.pattern_prob_sum + other.pattern_prob_sum)
        for p in (self, other):
            for m in p.sim_sum:
                out.add_similarity(m, p.sim_sum[m], p.sim_count[m])
            if p.rel_count is not None:
                if out.rel_count is not None and out.rel_count.shape != p.rel_count.shape:
                    raise ValueError("cannot merge relation counts over different relation sets")
                out.add_relations(p.rel_count, p.rel_correct, p.rel_offset)
        return out

    def save(self, path: str | Path) -> None:
        arrays = {
            "shape": np.array([self.n_layers, self.n_heads]),
            "scalars": np.array([self.records, self.rows, self.attn_bytes, self.pair_rows], np.float64),
            "feature_sums": self.feature_sums,
            "pattern_counts": self.pattern_counts,
            "pattern_uncertain": self.pattern_uncertain,
            "pattern_prob_sum": self.pattern_prob_sum,
        }
        for m, v in self.sim_sum.items():
            arrays[f"sim_sum_{m}"] = v
            arrays[f"sim_count_{m}"] = np.array(self.sim_count[m])
        if self.rel_count is not None:
            arrays.update(rel_count=self.rel_count, rel_correct=self.rel_correct, rel_offset=self.rel_offset)
        np.savez(path, **arrays)

    @classmethod
    def load(cls, path: str | Path) -> Partial:
        z = np.load(path)
        L, H = (int(x) for x in z["shape"])
        records, rows, nbytes, pair_rows = z["scalars"]
        p = cls(L, H, int(records), float(rows), int(nbytes), z["feature_sums"], float(pair_rows),
                z["pattern_counts"], z["pattern_uncertain"] if "pattern_uncertain" in z.files else None,
                z["pattern_prob_sum"] if "pattern_prob_sum" in z.files else None)
        for key in z.files:
            if key.startswith("sim_sum_"):
                m = key[len("sim_sum_"):]
                p.add_similarity(m, z[key], float(z[f"sim_count_{m}"]))
        if "rel_count" in z.files:
            p.add_relations(z["rel_count"], z["rel_correct"], z["rel_offset"])
        return p
