"""The five attention pattern types of Kovaleva et al. (2019, §3, Figure 1) and the hand-set rule baseline.

Types (codes): 0 vertical, 1 diagonal, 2 vertical_diagonal, 3 block, 4 heterogeneous.

``attnx analyze`` labels maps with the learned classifier of :mod:`attnx.kernels.pattern_model`; the
threshold rules below are kept as the documented, inspectable baseline it is measured against
(``pattern_classifier/train_patterns.py`` reports both on the same held-out maps).

The classifier is a pure function over per-map features (:mod:`attnx.kernels.features`), so it can be
evaluated and re-tuned on hand-labelled maps without touching the kernels. Scores, each chance-corrected
``s = (x - c) / (1 - c)`` where ``c`` is what uniform attention over the ``l`` keys would give:

* ``vertical``  = the largest of: mass on [CLS] + [SEP]s + punctuation (chance: stripe columns / l), mass on
  the most-attended column (chance 1 / l), mass on the 3 most-attended columns (chance 3 / l) -- vertical
  stripes, "in practice [CLS]/[SEP]/punctuation" (§3), or a few content tokens (multi-stripe maps).
* ``diagonal``  = mass on offsets -1, 0, +1 (previous, self, next), chance ``(3l - 2) / l^2``.
* ``own_segment`` (pairs) = mass within the query's own segment, chance ``(la^2 + lb^2) / l^2``.

Rules, in order (thresholds in ``attnx/data/pattern_thresholds.json``, tuned on the ``tune`` split of
``validation/pattern_labels.csv`` by ``pattern_classifier/tune_patterns.py``):

1. diagonal:           diagonal >= ``diagonal`` and vertical < ``diagonal_max_vertical``
2. vertical_diagonal:  diagonal >= ``vd_diagonal`` and vertical >= ``vd_vertical``
3. vertical:           vertical >= ``vertical``
4. block:              sentence pairs only: own_segment >= ``block_own_segment`` and
                       vertical < ``block_max_vertical`` (spread within the segment, no dominant column)
5. heterogeneous:      everything else (including diffuse single-sentence maps)
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from attnx.kernels.names import BLOCK, DIAGONAL, HETEROGENEOUS, PATTERNS, VERTICAL, VERTICAL_DIAGONAL, F


@dataclass(frozen=True)
class Thresholds:
    """Classifier thresholds (see module docstring). The defaults are the values of the packaged
    ``attnx/data/pattern_thresholds.json`` (a test keeps the two equal)."""

    diagonal: float = 0.3
    diagonal_max_vertical: float = 0.3
    vd_diagonal: float = 0.08
    vd_vertical: float = 0.2
    vertical: float = 0.35
    block_own_segment: float = 0.5
    block_max_vertical: float = 0.3

    @classmethod
    def load(cls, path: str | Path | None = None) -> Thresholds:
        """From a JSON file (keys starting with ``_`` and ``version`` ignored); default: the packaged file."""
        if path is None:
            text = resources.files("attnx").joinpath("data/pattern_thresholds.json").read_text()
        else:
            text = Path(path).read_text()
        data = json.loads(text)
        return cls(**{k: float(v) for k, v in data.items() if not k.startswith("_") and k != "version"})

    def to_json(self) -> dict:
        return asdict(self)


def _corrected(x: np.ndarray, chance: np.ndarray) -> np.ndarray:
    chance = np.minimum(chance, 1.0 - 1e-9)
    return (x - chance) / (1.0 - chance)


def pattern_scores(
    means: np.ndarray,
    lengths: np.ndarray,
    len_a: np.ndarray,
    n_stripe: np.ndarray,
) -> dict[str, np.ndarray]:
    """Chance-corrected scores of every map.

    means: ``(..., NF)`` per-map feature means (:func:`attnx.kernels.features.per_map_means`).
    lengths, len_a, n_stripe: broadcastable to ``means.shape[:-1]``: ``l``, segment-A length (= l for single
    sentences) and the number of [CLS] + [SEP] + punctuation columns of the record.
    Returns ``vertical``, ``diagonal``, ``own_segment`` (pairs; 1 for singles), ``entropy_norm``, ``pair``.
    """
    shape = means.shape[:-1]
    l = np.broadcast_to(np.asarray(lengths, np.float64), shape)
    la = np.broadcast_to(np.asarray(len_a, np.float64), shape)
    ns = np.broadcast_to(np.asarray(n_stripe, np.float64), shape)
    m = means.astype(np.float64, copy=False)
    stripe = m[..., F["cls"]] + m[..., F["sep"]] + m[..., F["punct"]]
    vertical = np.maximum(_corrected(stripe, ns / l), _corrected(m[..., F["col_max"]], 1.0 / l))
    vertical = np.maximum(vertical, _corrected(m[..., F["col_top3"]], np.minimum(3.0, l) / l))
    diag = m[..., F["self"]] + m[..., F["prev"]] + m[..., F["next"]]
    diagonal = _corrected(diag, (3 * l - 2) / (l * l))
    pair = la < l
    lb = l - la
    own = np.where(pair, _corrected(m[..., F["own_segment"]], (la * la + lb * lb) / (l * l)), 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ent = np.where(l > 1, m[..., F["entropy"]] / np.log(np.maximum(l, 2.0)), 0.0)
    return {"vertical": vertical, "diagonal": diagonal, "own_segment": own, "entropy_norm": ent, "pair": pair}


def classify_scores(scores: dict[str, np.ndarray], thresholds: Thresholds | None = None) -> np.ndarray:
    """Pattern codes (int8, shape of the scores) from :func:`pattern_scores` by the ordered rules."""
    t = thresholds or Thresholds.load()
    v, d = scores["vertical"], scores["diagonal"]
    codes = np.full(v.shape, HETEROGENEOUS, np.int8)
    rules = [  # in priority order; the first that holds wins
        (DIAGONAL, (d >= t.diagonal) & (v < t.diagonal_max_vertical)),
        (VERTICAL_DIAGONAL, (d >= t.vd_diagonal) & (v >= t.vd_vertical)),
        (VERTICAL, v >= t.vertical),
        (BLOCK, scores["pair"] & (scores["own_segment"] >= t.block_own_segment) & (v < t.block_max_vertical)),
    ]
    for code, hit in reversed(rules):  # assign lowest priority first so earlier rules overwrite
        codes[hit] = code
    return codes


def classify_maps(
    means: np.ndarray,
    lengths: np.ndarray,
    len_a: np.ndarray,
    n_stripe: np.ndarray,
    thresholds: Thresholds | None = None,
) -> np.ndarray:
    """Pattern code of every map: ``means (..., NF)`` -> ``(...)`` int8 (codes as in :data:`PATTERNS`).

    A pure function of per-map feature means and the record's ``l``, ``len_a`` and stripe-column count,
    so hand-labelled maps can be scored (and the thresholds tuned) without re-running any kernel.
    """
    return classify_scores(pattern_scores(means, lengths, len_a, n_stripe), thresholds)


def pattern_counts(codes: np.ndarray) -> np.ndarray:
    """``(b, L, H)`` codes -> ``(L, H, 5)`` int64 counts per type (mergeable by addition)."""
    L, H = codes.shape[1:]
    out = np.zeros((L, H, len(PATTERNS)), np.int64)
    for k in range(len(PATTERNS)):
        out[..., k] = (codes == k).sum(axis=0)
    return out
