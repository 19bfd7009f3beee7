"""Clustering heads from a head-distance matrix (Clark et al. 2019, §6, Figure 6).

* average-linkage agglomerative clustering (UPGMA) with ``scipy.cluster.hierarchy``: the linkage matrix, the
  dendrogram leaf order, and flat clusters cut at ``cut`` distance (tested against a naive UPGMA);
* classical (Torgerson) multidimensional scaling to 2-D: five lines of numpy, kept by hand because neither
  scipy nor scikit-learn has it (``sklearn.manifold.MDS`` is iterative SMACOF, a different embedding).

Distances: cosine similarity s -> 1 - s; Jensen-Shannon divergence is used as is (bits, in [0, 1]).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.cluster.hierarchy import fcluster, leaves_list, linkage
from scipy.spatial.distance import squareform

DEFAULT_CUT = 0.5


@dataclass(frozen=True)
class HeadClusters:
    linkage: np.ndarray  # (n-1, 4): cluster i, cluster j, distance, size (SciPy convention)
    order: np.ndarray  # (n,) leaf order of the dendrogram
    labels: np.ndarray  # (n,) flat cluster id (0-based, numbered by first appearance in ``order``)
    mds: np.ndarray  # (n, 2) classical MDS coordinates
    n_clusters: int


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
    if n < 2:
        return HeadClusters(np.zeros((0, 4)), np.arange(n), np.zeros(n, np.int64), np.zeros((n, 2)), n)
    Z = linkage(squareform(dist, checks=False), method="average")
    order = leaves_list(Z)
    roots = fcluster(Z, t=cut, criterion="distance")
    relabel: dict[int, int] = {}
    for leaf in order:
        relabel.setdefault(int(roots[leaf]), len(relabel))
    labels = np.array([relabel[int(r)] for r in roots], np.int64)
    return HeadClusters(Z, order, labels, classical_mds(dist), len(relabel))
