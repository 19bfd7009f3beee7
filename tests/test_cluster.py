"""Head clustering against obviously-correct twins: a naive UPGMA, flat clusters by cophenetic distance,
and classical MDS that reproduces Euclidean distances exactly."""

from __future__ import annotations

import numpy as np
import pytest

from attnx.analysis.head_clusters import classical_mds, cluster_heads


def naive_upgma(dist: np.ndarray) -> list[tuple[frozenset, float]]:
    """Merge the two closest clusters (mean pairwise distance) until one remains: (members, height) per merge."""
    clusters = [frozenset([i]) for i in range(len(dist))]
    merges = []
    while len(clusters) > 1:
        best = None
        for a in range(len(clusters)):
            for b in range(a + 1, len(clusters)):
                d = np.mean([dist[i, j] for i in clusters[a] for j in clusters[b]])
                if best is None or d < best[0]:
                    best = (d, a, b)
        d, a, b = best
        merged = clusters[a] | clusters[b]
        merges.append((merged, d))
        clusters = [c for k, c in enumerate(clusters) if k not in (a, b)] + [merged]
    return merges


def cophenetic_groups(merges: list[tuple[frozenset, float]], n: int, cut: float) -> set[frozenset]:
    groups = {frozenset([i]) for i in range(n)}
    for members, height in merges:
        if height <= cut:
            groups = {g for g in groups if not g <= members} | {members}
    return groups


@pytest.mark.parametrize("seed", range(5))
def test_linkage_and_flat_clusters_match_naive_upgma(seed: int) -> None:
    rng = np.random.default_rng(seed)
    pts = rng.normal(size=(14, 3))
    dist = np.linalg.norm(pts[:, None] - pts[None], axis=-1)
    dist /= dist.max()
    cut = float(np.median(dist))
    cl = cluster_heads(dist, cut=cut)
    merges = naive_upgma(dist)
    np.testing.assert_allclose(np.sort(cl.linkage[:, 2]), sorted(h for _, h in merges), rtol=1e-12)
    ours = {frozenset(np.flatnonzero(cl.labels == k).tolist()) for k in range(cl.n_clusters)}
    assert ours == cophenetic_groups(merges, 14, cut)
    first_seen = [int(cl.labels[leaf]) for leaf in cl.order]
    assert sorted(set(first_seen), key=first_seen.index) == list(range(cl.n_clusters))  # numbered in leaf order


def test_classical_mds_recovers_planar_distances() -> None:
    pts = np.random.default_rng(1).normal(size=(10, 2))
    dist = np.linalg.norm(pts[:, None] - pts[None], axis=-1)
    xy = classical_mds(dist)
    np.testing.assert_allclose(np.linalg.norm(xy[:, None] - xy[None], axis=-1), dist, atol=1e-9)


def test_degenerate_sizes() -> None:
    assert cluster_heads(np.zeros((1, 1))).n_clusters == 1
    assert cluster_heads(np.zeros((0, 0))).n_clusters == 0
