"""Clustering heads from a head-distance matrix, in plain numpy (Clark et al. 2019, §6, Figure 6).

* average-linkage agglomerative clustering (UPGMA), O(n^3) for n heads (n = 144: milliseconds), giving a
  SciPy-style linkage matrix, the dendrogram leaf order, and flat clusters cut at ``cut`` distance;
* classical (Torgerson) multidimensional scaling to 2-D.

Distances: cosine similarity s -> 1 - s; Jensen-Shannon divergence is used as is (bits, in [0, 1]).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEFAULT_CUT = 0.5


@dataclass(frozen=True)
class HeadClusters:
    linkage: np.ndarray  # (n-1, 4): cluster i, cluster j, distance, size (SciPy convention)
    order: np.ndarray  # (n,) leaf order of the dendrogram
    labels: np.ndarray  # (n,) flat cluster id (0-based, numbered by first appearance in ``order``)
    mds: np.ndarray  # (n, 2) classical MDS coordinates
    n_clusters: int


def average_linkage(dist: np.ndarray) -> np.ndarray:
    """UPGMA on a symmetric ``(n, n)`` distance matrix -> ``(n-1, 4)`` linkage (SciPy convention)."""
    n = len(dist)
    D = np.array(dist, np.float64, copy=True)
    np.fill_diagonal(D, np.inf)
    ids = list(range(n))
    size = [1] * n
    active = np.ones(n, bool)
    Z = np.zeros((max(n - 1, 0), 4))
    for step in range(n - 1):
        sub = np.where(active[:, None] & active[None, :], D, np.inf)
        i, j = np.unravel_index(int(np.argmin(sub)), sub.shape)
        i, j = min(i, j), max(i, j)
        d = D[i, j]
        Z[step] = [min(ids[i], ids[j]), max(ids[i], ids[j]), d, size[i] + size[j]]
        new = (D[i] * size[i] + D[j] * size[j]) / (size[i] + size[j])
        D[i, :] = new
        D[:, i] = new
        D[i, i] = np.inf
        active[j] = False
        D[j, :] = np.inf
        D[:, j] = np.inf
        size[i] += size[j]
        ids[i] = n + step
    return Z


def leaf_order(Z: np.ndarray, n: int) -> np.ndarray:
    """Dendrogram leaf order of a linkage matrix."""
    if n <= 1:
        return np.arange(n)
    children = {n + k: (int(Z[k, 0]), int(Z[k, 1])) for k in range(len(Z))}
    out, stack = [], [n + len(Z) - 1]
    while stack:
        c = stack.pop()
        if c < n:
            out.append(c)
        else:
            a, b = children[c]
            stack.extend([b, a])
    return np.array(out, np.int64)


def flat_clusters(Z: np.ndarray, n: int, cut: float) -> np.ndarray:
    """Flat clusters: merges at distance <= ``cut`` join (union-find over the linkage)."""
    parent = list(range(2 * n))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for k in range(len(Z)):
        if Z[k, 2] <= cut:
            parent[find(int(Z[k, 0]))] = n + k
            parent[find(int(Z[k, 1]))] = n + k
    roots = np.array([find(i) for i in range(n)])
    return roots


def classical_mds(dist: np.ndarray, dims: int = 2) -> np.ndarray:
    """Torgerson MDS: ``(n, dims)`` coordinates whose distances approximate ``dist``."""
    n = len(dist)
    D2 = np.asarray(dist, np.float64) ** 2
    J = np.eye(n) - 1.0 / n
    B = -0.5 * J @ D2 @ J
    w, V = np.linalg.eigh((B + B.T) / 2)
    idx = np.argsort(w)[::-1][:dims]
    return V[:, idx] * np.sqrt(np.maximum(w[idx], 0.0))


def cluster_heads(dist: np.ndarray, cut: float = DEFAULT_CUT) -> HeadClusters:
    """Average-linkage clustering, leaf order, flat clusters at ``cut`` and 2-D MDS of ``(n, n)`` distances."""
    dist = np.nan_to_num(np.asarray(dist, np.float64), nan=1.0)
    dist = 0.5 * (dist + dist.T)
    np.fill_diagonal(dist, 0.0)
    n = len(dist)
    Z = average_linkage(dist)
    order = leaf_order(Z, n)
    roots = flat_clusters(Z, n, cut)
    relabel: dict[int, int] = {}
    for leaf in order:
        relabel.setdefault(int(roots[leaf]), len(relabel))
    labels = np.array([relabel[int(r)] for r in roots], np.int64)
    return HeadClusters(Z, order, labels, classical_mds(dist), len(relabel))
