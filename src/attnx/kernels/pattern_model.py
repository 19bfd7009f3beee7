"""The learned attention-pattern classifier: per-map design features and a small model shipped as JSON.

Kovaleva et al. (2019, §3) label maps with five types (:data:`attnx.kernels.patterns.PATTERNS`). attnx
classifies every map from its per-map feature means (:mod:`attnx.kernels.features`, one numba pass over
the stored attention), so classification costs O(maps), not O(l^2): the features come out of the same
kernel pass that ``attnx analyze`` runs anyway.

:func:`design_matrix` turns the means into :data:`DESIGN` (chance-corrected where a uniform map would
score above 0), and :class:`PatternModel` maps them to class probabilities. Those two are the plain numpy
path (training, evaluation, the reference); ``attnx analyze`` runs :func:`classify_sums`, one numba pass
from the kernel's row sums straight to labels (the same arithmetic, tested against the numpy path).
The model (multinomial logistic regression on standardised design features) lives in
``attnx/data/pattern_model.json``, written by ``pattern_classifier/train_patterns.py``; labels are the most
probable type, its probability and the margin to the runner-up.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
from numba import njit, prange

from attnx.errors import InputError
from attnx.kernels.names import PATTERNS, F

DESIGN: tuple[str, ...] = (
    "vertical", "stripe", "cls", "col_max", "col_top3", "col_conc",
    "diagonal", "self", "prev", "next", "band2",
    "own_segment", "seg_block", "entropy", "cls_entropy", "max_weight", "distance", "log_len", "pair",
    "diag_best", "diag_vis", "map_max",
)  # fmt: skip
MODEL_FILE = "data/pattern_model.json"


MAX_CHANCE = 0.9  # records made almost only of stripe tokens (GUM lists of symbols) would divide by ~0


def _corr(x: np.ndarray, chance: np.ndarray) -> np.ndarray:
    """Chance-corrected ``(x - c) / (1 - c)``, ``c`` capped at :data:`MAX_CHANCE` and the result clipped to
    ``[-1, 1]``: 0 under uniform attention, 1 at the maximum."""
    chance = np.minimum(chance, MAX_CHANCE)
    return np.clip((x - chance) / (1.0 - chance), -1.0, 1.0)


def design_matrix(means: np.ndarray, lengths: np.ndarray, len_a: np.ndarray, n_stripe: np.ndarray) -> np.ndarray:
    """Design features ``(..., len(DESIGN))`` float64 of every map, in :data:`DESIGN` order.

    means: ``(..., NF)`` per-map feature means (:func:`attnx.kernels.features.per_map_means`);
    lengths, len_a, n_stripe: broadcastable to ``means.shape[:-1]``: ``l`` (wordpieces), segment-A length
    (= l for single sentences) and the record's number of [CLS] + [SEP] + punctuation columns.
    Shares of row mass are chance-corrected against uniform attention over the ``l`` keys; ``entropy``
    and ``cls_entropy`` are divided by ``ln l``; ``distance`` by ``l``; ``own_segment`` is 0 for singles.
    ``diag_best`` is the strongest single diagonal (self, previous or next token; chance-corrected),
    ``diag_vis`` its mean weight over the map's largest weight ``map_max`` (how bright the diagonal looks
    on a panel scaled 0..max, as the labellers saw them; 0 for an all-zero map).
    """
    shape = means.shape[:-1]
    m = means.astype(np.float64, copy=False)
    l = np.broadcast_to(np.asarray(lengths, np.float64), shape)
    la = np.minimum(np.broadcast_to(np.asarray(len_a, np.float64), shape), l)
    ns = np.broadcast_to(np.asarray(n_stripe, np.float64), shape)
    lb = l - la
    pair = la < l
    inv = 1.0 / l
    stripe = _corr(m[..., F["cls"]] + m[..., F["sep"]] + m[..., F["punct"]], ns * inv)
    col_max = _corr(m[..., F["col_max"]], inv)
    col_top3 = _corr(m[..., F["col_top3"]], np.minimum(3.0, l) * inv)
    diag = _corr(m[..., F["self"]] + m[..., F["prev"]] + m[..., F["next"]], (3 * l - 2) * inv * inv)
    own = np.where(pair, _corr(m[..., F["own_segment"]], (la * la + lb * lb) * inv * inv), 0.0)
    # keys a uniform row would spread over in the segment-block feature: own segment minus its special
    # tokens ([CLS] + [SEP] in A, [SEP] in B) minus the <= 3 keys within 1 of the query
    blk_a = np.maximum(la - 2.0 - 3.0, 0.0)
    blk_b = np.maximum(lb - 1.0 - 3.0, 0.0)
    blk_chance = (la * blk_a + lb * blk_b) * inv * inv
    logl = np.log(np.maximum(l, 2.0))
    diag_top = np.maximum(np.maximum(m[..., F["self"]], m[..., F["prev"]]), m[..., F["next"]])
    mmax = m[..., F["map_max"]]
    cols = {
        "vertical": np.maximum(np.maximum(stripe, col_max), col_top3),
        "stripe": stripe,
        "cls": _corr(m[..., F["cls"]], inv),
        "col_max": col_max,
        "col_top3": col_top3,
        "col_conc": _corr(m[..., F["col_sq"]], inv),
        "diagonal": diag,
        "self": _corr(m[..., F["self"]], inv),
        "prev": _corr(m[..., F["prev"]], inv),
        "next": _corr(m[..., F["next"]], inv),
        "band2": _corr(m[..., F["band2"]], np.minimum(2.0, np.maximum(l - 2.0, 0.0)) * inv),
        "own_segment": own,
        "seg_block": m[..., F["seg_block"]] - blk_chance,
        "entropy": m[..., F["entropy"]] / logl,
        "cls_entropy": m[..., F["cls_entropy"]] / logl,
        "max_weight": _corr(m[..., F["max_weight"]], inv),
        "distance": m[..., F["distance"]] * inv,
        "log_len": logl,
        "pair": pair.astype(np.float64),
        "diag_best": _corr(diag_top, inv),
        "diag_vis": np.clip(diag_top / np.maximum(mmax, 1e-12), 0.0, 1.0),
        "map_max": mmax,
    }
    return np.stack([np.broadcast_to(cols[k], shape) for k in DESIGN], axis=-1)


@dataclass(frozen=True)
class PatternModel:
    """Multinomial logistic regression over standardised :data:`DESIGN` features (K = 5 classes, D features).

    ``p = softmax(((clip(x, lo, hi) - mean) / scale) @ coef.T + intercept)``: each feature is first clipped
    to the range seen in training, so maps unlike any labelled one (a perfect diagonal in a 4-token
    sentence) are not labelled by linear extrapolation. A map whose winning probability is below
    ``uncertain_below`` counts as uncertain in ``patterns.csv``.
    """

    mean: np.ndarray  # (D,)
    scale: np.ndarray  # (D,)
    coef: np.ndarray  # (K, D)
    intercept: np.ndarray  # (K,)
    lo: np.ndarray  # (D,) smallest value of each feature in training
    hi: np.ndarray  # (D,) largest
    uncertain_below: float
    source: str  # where it was loaded from
    digest: str  # sha256 of the JSON text (first 16 hex digits)
    info: dict  # the JSON's descriptive fields (training data, measured scores)

    @classmethod
    def load(cls, path: str | Path | None = None) -> PatternModel:
        """From a JSON file (default: the packaged ``attnx/data/pattern_model.json``).

        Raises :class:`attnx.errors.InputError` naming the file when it is not JSON or its classes,
        features or array shapes do not match.
        """
        if path is None:
            text = resources.files("attnx").joinpath(MODEL_FILE).read_text()
            source = f"attnx/{MODEL_FILE}"
        else:
            text = Path(path).read_text()
            source = str(path)
        try:
            d = json.loads(text)
            if d.get("kind") != "softmax":
                raise ValueError(f"kind {d.get('kind')!r}, expected 'softmax'")
            if tuple(d["classes"]) != PATTERNS:
                raise ValueError(f"classes {d['classes']} differ from {list(PATTERNS)}")
            if tuple(d["features"]) != DESIGN:
                raise ValueError(f"features {d['features']} differ from {list(DESIGN)}")
            k, n = len(PATTERNS), len(DESIGN)
            want = {"mean": (n,), "scale": (n,), "coef": (k, n), "intercept": (k,), "lo": (n,), "hi": (n,)}
            arrays = {name: np.asarray(d[name], np.float64) for name in want}
            for name, shape in want.items():
                if arrays[name].shape != shape:
                    raise ValueError(f"{name} has shape {arrays[name].shape}, expected {shape}")
            if not all(np.isfinite(a).all() for a in arrays.values()) or (arrays["scale"] <= 0).any():
                raise ValueError("non-finite values or a non-positive scale")
            if (arrays["lo"] > arrays["hi"]).any():
                raise ValueError("lo > hi")
            uncertain = float(d["uncertain_below"])
        except KeyError as exc:
            raise InputError(source, None, f"not a pattern model (no {exc} field)") from None
        except (TypeError, ValueError) as exc:
            raise InputError(source, None, f"not a pattern model ({exc})") from None
        info = {key: v for key, v in d.items() if key not in want and key not in ("classes", "features")}
        digest = hashlib.sha256(text.encode()).hexdigest()[:16]
        return cls(arrays["mean"], arrays["scale"], arrays["coef"], arrays["intercept"], arrays["lo"], arrays["hi"],
                   uncertain, source, digest, info)

    def logits(self, x: np.ndarray) -> np.ndarray:
        """``x (..., D)`` design features -> ``(..., K)`` logits."""
        return ((np.clip(x, self.lo, self.hi) - self.mean) / self.scale) @ self.coef.T + self.intercept

    def proba(self, x: np.ndarray) -> np.ndarray:
        """``x (..., D)`` -> ``(..., K)`` class probabilities (softmax of :meth:`logits`; rows sum to 1)."""
        z = self.logits(x)
        z = np.exp(z - z.max(axis=-1, keepdims=True))
        return z / z.sum(axis=-1, keepdims=True)


@dataclass(frozen=True)
class Labels:
    """Pattern labels of a set of maps, all of the same shape ``S`` (e.g. ``(b, L, H)``)."""

    codes: np.ndarray  # S int8: index into PATTERNS
    prob: np.ndarray  # S float32: probability of the chosen type
    margin: np.ndarray  # S float32: its probability minus the runner-up's


def classify(x: np.ndarray, model: PatternModel | None = None) -> Labels:
    """Label every map from its design features ``x (..., D)``: most probable type, probability, margin."""
    model = model or default_model()
    p = model.proba(x)
    top2 = np.sort(p, axis=-1)[..., -2:]
    return Labels(np.argmax(p, axis=-1).astype(np.int8), top2[..., 1].astype(np.float32),
                  (top2[..., 1] - top2[..., 0]).astype(np.float32))


def classify_means(means: np.ndarray, lengths: np.ndarray, len_a: np.ndarray, n_stripe: np.ndarray,
                   model: PatternModel | None = None) -> Labels:
    """:func:`classify` of :func:`design_matrix` (arguments as there): per-map means -> labels."""
    return classify(design_matrix(means, lengths, len_a, n_stripe), model)


# feature indices as module constants (numba freezes globals at compile time)
_CLS, _SEP, _PUN, _SELF, _PREV, _NEXT = F["cls"], F["sep"], F["punct"], F["self"], F["prev"], F["next"]
_DIST, _ENT, _CLSENT, _MAXW, _OWN = F["distance"], F["entropy"], F["cls_entropy"], F["max_weight"], F["own_segment"]
_COLMAX, _COLTOP3, _BAND2, _COLSQ, _SEGBLK = F["col_max"], F["col_top3"], F["band2"], F["col_sq"], F["seg_block"]
_MAPMAX = F["map_max"]


@njit(cache=True, nogil=True, inline="always")
def _c(x, chance):  # noqa: ANN001, ANN202
    chance = min(chance, MAX_CHANCE)
    return min(max((x - chance) / (1.0 - chance), -1.0), 1.0)


@njit(parallel=True, cache=True, nogil=True)
def _classify_kernel(sums, lengths, len_a, n_stripe, w, w0, lo, hi, codes, prob, margin):  # noqa: ANN001, ANN202
    """Per record ``r`` and map ``m``: design features of ``sums[r, m]`` (as :func:`design_matrix`), logits
    ``w @ clip(x, lo, hi) + w0`` (standardisation folded into ``w``, ``w0``), softmax, arg-max.
    ``sums`` (b, M, NF) row sums; writes ``codes``, ``prob``, ``margin`` (b, M)."""
    b, n_maps = sums.shape[0], sums.shape[1]
    n_k, n_d = w.shape
    for r in prange(b):
        l = float(lengths[r])
        la = min(float(len_a[r]), l)
        lb = l - la
        pair = la < l
        inv = 1.0 / l
        c_stripe = float(n_stripe[r]) * inv
        c_top3 = min(3.0, l) * inv
        c_diag = (3.0 * l - 2.0) * inv * inv
        c_own = (la * la + lb * lb) * inv * inv
        c_band2 = min(2.0, max(l - 2.0, 0.0)) * inv
        blk_chance = (la * max(la - 5.0, 0.0) + lb * max(lb - 4.0, 0.0)) * inv * inv
        logl = np.log(max(l, 2.0))
        x = np.empty(n_d)
        z = np.empty(n_k)
        for m in range(n_maps):
            s = sums[r, m]
            stripe = _c((s[_CLS] + s[_SEP] + s[_PUN]) * inv, c_stripe)
            col_max = _c(s[_COLMAX] * inv, inv)
            col_top3 = _c(s[_COLTOP3] * inv, c_top3)
            x[0] = max(max(stripe, col_max), col_top3)  # DESIGN order
            x[1] = stripe
            x[2] = _c(s[_CLS] * inv, inv)
            x[3] = col_max
            x[4] = col_top3
            x[5] = _c(s[_COLSQ] * inv, inv)
            x[6] = _c((s[_SELF] + s[_PREV] + s[_NEXT]) * inv, c_diag)
            x[7] = _c(s[_SELF] * inv, inv)
            x[8] = _c(s[_PREV] * inv, inv)
            x[9] = _c(s[_NEXT] * inv, inv)
            x[10] = _c(s[_BAND2] * inv, c_band2)
            x[11] = _c(s[_OWN] * inv, c_own) if pair else 0.0
            x[12] = s[_SEGBLK] * inv - blk_chance
            x[13] = s[_ENT] * inv / logl
            x[14] = s[_CLSENT] / logl
            x[15] = _c(s[_MAXW] * inv, inv)
            x[16] = s[_DIST] * inv * inv
            x[17] = logl
            x[18] = 1.0 if pair else 0.0
            top_d = max(max(s[_SELF], s[_PREV]), s[_NEXT]) * inv
            mmax = s[_MAPMAX] * inv
            x[19] = _c(top_d, inv)
            x[20] = min(max(top_d / max(mmax, 1e-12), 0.0), 1.0)
            x[21] = mmax
            top = -np.inf
            for k in range(n_k):
                v = w0[k]
                for d in range(n_d):
                    v += w[k, d] * min(max(x[d], lo[d]), hi[d])
                z[k] = v
                top = max(top, v)
            tot = 0.0
            for k in range(n_k):
                z[k] = np.exp(z[k] - top)
                tot += z[k]
            best, p1, p2 = 0, -1.0, -1.0
            for k in range(n_k):
                p = z[k] / tot
                if p > p1:
                    best, p2, p1 = k, p1, p
                elif p > p2:
                    p2 = p
            codes[r, m] = best
            prob[r, m] = p1
            margin[r, m] = p1 - p2


def classify_sums(sums: np.ndarray, lengths: np.ndarray, len_a: np.ndarray, n_stripe: np.ndarray,
                  model: PatternModel | None = None) -> Labels:
    """Labels of every map from the feature kernel's row sums, in one numba pass (what ``attnx analyze`` runs).

    sums: ``(b, L, H, NF)`` row sums (:func:`attnx.kernels.features.map_features`); lengths, len_a, n_stripe:
    ``(b,)`` per record (``len_a`` = l for singles; [CLS] + [SEP] + punctuation columns). Returns
    :class:`Labels` of shape ``(b, L, H)``; equal to :func:`classify_means` of the per-map means up to
    floating-point rounding (tested).
    """
    model = model or default_model()
    b = sums.shape[0]
    flat = np.ascontiguousarray(sums.reshape(b, int(np.prod(sums.shape[1:-1])), sums.shape[-1]), np.float64)
    codes = np.empty(flat.shape[:2], np.int8)
    prob = np.empty(flat.shape[:2], np.float32)
    margin = np.empty(flat.shape[:2], np.float32)
    if b:
        w = np.ascontiguousarray(model.coef / model.scale)  # (K, D): logits = w @ x + w0
        w0 = model.intercept - w @ model.mean
        _classify_kernel(flat, np.ascontiguousarray(lengths, np.int64), np.ascontiguousarray(len_a, np.int64),
                         np.ascontiguousarray(n_stripe, np.int64), w, w0, model.lo, model.hi, codes, prob, margin)
    shape = sums.shape[:-1]
    return Labels(codes.reshape(shape), prob.reshape(shape), margin.reshape(shape))


_DEFAULT: list[PatternModel] = []


def default_model() -> PatternModel:
    """The packaged model (loaded once)."""
    if not _DEFAULT:
        _DEFAULT.append(PatternModel.load())
    return _DEFAULT[0]
