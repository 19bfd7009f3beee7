"""Task metrics and seeded bootstrap confidence intervals, vectorised over ablation configurations.

Classification metrics are computed from (weighted) confusion matrices so that a bootstrap resample
is just a vector of per-example counts: ``accuracy``, ``f1`` (binary F1 of class 1 when there are two
classes, macro F1 otherwise), ``mcc`` (Matthews correlation; Gorodkin's multiclass R_K).
Regression: ``pearson``, ``spearman`` (Pearson on average ranks; in bootstraps the ranks of the full
sample are reused, a standard approximation).
"""

from __future__ import annotations

import numpy as np
import scipy.stats

CLASSIFICATION_METRICS = ("accuracy", "f1", "mcc")
REGRESSION_METRICS = ("pearson", "spearman")


def default_metric(task: str) -> str:
    return "accuracy" if task == "classification" else "pearson"


def check_metric(metric: str, task: str) -> None:
    allowed = CLASSIFICATION_METRICS if task == "classification" else REGRESSION_METRICS
    if metric not in allowed:
        raise ValueError(f"metric {metric!r} does not apply to {task} (use {', '.join(allowed)})")


def confusion(y: np.ndarray, pred: np.ndarray, k: int, weights: np.ndarray | None = None) -> np.ndarray:
    """Confusion counts ``(..., k, k)`` [true, pred].

    ``y`` int ``(n,)``; ``pred`` int ``(c, n)``; ``weights`` ``(b, n)`` per-example counts or None.
    Returns ``(c, k, k)`` without weights, ``(b, c, k, k)`` with.
    """
    cells = y[None, :] * k + pred  # (c, n)
    onehot = np.zeros((*cells.shape, k * k), np.float64)  # (c, n, k*k)
    np.put_along_axis(onehot, cells[..., None], 1.0, axis=-1)
    if weights is None:
        return onehot.sum(1).reshape(-1, k, k)
    out = np.einsum("bn,cnj->bcj", weights.astype(np.float64), onehot)  # (b, c, k*k)
    return out.reshape(*out.shape[:2], k, k)


def from_confusion(cm: np.ndarray, metric: str) -> np.ndarray:
    """Metric from confusion matrices ``(..., k, k)`` -> ``(...)``; undefined ratios give 0."""
    cm = cm.astype(np.float64)
    total = cm.sum((-2, -1))
    diag = np.diagonal(cm, axis1=-2, axis2=-1)  # (..., k)
    with np.errstate(divide="ignore", invalid="ignore"):
        if metric == "accuracy":
            return np.where(total > 0, diag.sum(-1) / total, 0.0)
        if metric == "f1":
            tp, fp, fn = diag, cm.sum(-2) - diag, cm.sum(-1) - diag
            denom = 2 * tp + fp + fn
            f1 = np.where(denom > 0, 2 * tp / np.where(denom > 0, denom, 1), 0.0)  # (..., k)
            return f1[..., 1] if cm.shape[-1] == 2 else f1.mean(-1)
        if metric == "mcc":
            t = cm.sum(-1)  # (..., k) true counts
            p = cm.sum(-2)  # (..., k) predicted counts
            c = diag.sum(-1)
            num = c * total - (t * p).sum(-1)
            den = np.sqrt((total**2 - (p * p).sum(-1)) * (total**2 - (t * t).sum(-1)))
            return np.where(den > 0, num / np.where(den > 0, den, 1), 0.0)
    raise ValueError(f"unknown classification metric {metric!r}")


def rankdata(x: np.ndarray) -> np.ndarray:
    """Average ranks (1-based) along the last axis, ties share their mean rank (``scipy.stats.rankdata``)."""
    return scipy.stats.rankdata(np.asarray(x, np.float64), method="average", axis=-1)


def weighted_pearson(y: np.ndarray, pred: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Pearson r of ``y`` ``(n,)`` with each row of ``pred`` ``(c, n)``.

    ``weights`` ``(b, n)``: per-example counts of b resamples -> ``(b, c)``; None -> ``(c,)``.
    """
    y = y.astype(np.float64)
    pred = pred.astype(np.float64)
    w = np.ones((1, y.shape[0])) if weights is None else weights.astype(np.float64)  # (b, n)
    sw = w.sum(1)[:, None]  # (b, 1)
    my = (w @ y)[:, None] / sw  # (b, 1)
    mp = (w @ pred.T) / sw  # (b, c)
    syy = (w @ (y * y))[:, None] / sw - my**2
    spp = (w @ (pred * pred).T) / sw - mp**2
    syp = (w @ (pred * y).T) / sw - my * mp
    den = np.sqrt(np.clip(syy * spp, 0, None))
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(den > 1e-300, syp / np.where(den > 1e-300, den, 1), 0.0)
    return r[0] if weights is None else r


def scores(y: np.ndarray, pred: np.ndarray, metric: str, k: int = 0) -> np.ndarray:
    """Metric of each configuration: ``y`` ``(n,)``, ``pred`` ``(c, n)`` (class ids or values) -> ``(c,)``."""
    if metric in CLASSIFICATION_METRICS:
        return from_confusion(confusion(y, pred, k), metric)
    if metric == "pearson":
        return weighted_pearson(y, pred)
    if metric == "spearman":
        return weighted_pearson(rankdata(y), rankdata(pred))
    raise ValueError(f"unknown metric {metric!r}")


def bootstrap_scores(
    y: np.ndarray,
    pred: np.ndarray,
    metric: str,
    k: int = 0,
    n_boot: int = 1000,
    seed: int = 0,
    chunk: int = 100,
) -> np.ndarray:
    """Scores of each configuration on ``n_boot`` seeded resamples of the examples, ``(n_boot, c)``.

    Every configuration sees the same resamples (paired bootstrap).
    """
    n = y.shape[0]
    rng = np.random.default_rng(seed)
    out = np.empty((n_boot, pred.shape[0]))
    if metric == "spearman":
        y, pred = rankdata(y), rankdata(pred)
    for start in range(0, n_boot, chunk):
        b = min(chunk, n_boot - start)
        idx = rng.integers(0, n, size=(b, n))
        weights = np.zeros((b, n))
        np.add.at(weights, (np.repeat(np.arange(b), n), idx.ravel()), 1.0)  # (b, n) resample counts
        if metric in CLASSIFICATION_METRICS:
            out[start : start + b] = from_confusion(confusion(y, pred, k, weights), metric)
        else:
            out[start : start + b] = weighted_pearson(y, pred, weights)
    return out


def percentile_ci(boot: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval per column of ``boot`` ``(n_boot, c)`` -> (low ``(c,)``, high ``(c,)``)."""
    alpha = (1 - level) / 2
    return np.quantile(boot, alpha, axis=0), np.quantile(boot, 1 - alpha, axis=0)
