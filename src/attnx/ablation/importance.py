"""Head importance (Michel, Levy and Neubig 2019, "Are Sixteen Heads Really Better than One?", Sec. 4.1).

Each head's output is multiplied by a gate ``xi_h`` (all 1); the importance of head h is
``I_h = sum_x |d L(x) / d xi_h|`` over the examples, with ``L`` the task loss (cross entropy, or squared
error for regression). Each example gets its own gate copy, so the absolute value is taken per example
as the paper defines it, in one backward pass per batch. ``normalise``: divide each layer's scores by
their l2 norm (the paper's per-layer normalisation). The pruning curve switches heads off in order of
increasing importance, 10% of the heads at a time, and scores the model at each step (batched).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from attnx.ablation.batching import chunks, pad
from attnx.ablation.forward import forward_configs, predict_configs, predictions
from attnx.ablation.metrics import check_metric, default_metric, scores
from attnx.ablation.prepare import Prepared
from attnx.ablation.task_model import n_heads_shape


@dataclass(frozen=True)
class Importance:
    """``raw``/``scores``: float64 ``(layers, heads)``; ``scores`` normalised per layer if asked."""

    raw: np.ndarray
    scores: np.ndarray
    normalised: bool
    n_examples: int


def head_importance(prep: Prepared, normalise: bool = True) -> Importance:
    """Accumulate ``|dL/dxi_h|`` over the evaluation examples (float32 forward, gradients on gates only)."""
    tm = prep.tm
    layers, heads = n_heads_shape(tm)
    device = tm.lm.device
    total = torch.zeros(layers, heads, dtype=torch.float64)
    none = torch.zeros(1, layers, heads, dtype=torch.bool, device=device)
    y_all = prep.targets.y
    for index in chunks(prep.enc, prep.eval, 1, device):
        ids, types, mask01 = pad(prep.enc, index, device)
        gates = torch.ones(len(index), layers, heads, device=device, requires_grad=True)  # (B, layers, heads)
        with torch.enable_grad():
            logits = forward_configs(tm, ids, types, mask01, none, "zero", gates=gates)[0]  # (B, k)
            if prep.targets.task == "regression":
                target = torch.as_tensor(y_all[index], dtype=torch.float32, device=device)
                loss = ((logits[:, 0] - target) ** 2).sum()
            else:
                target = torch.as_tensor(y_all[index], dtype=torch.long, device=device)
                loss = torch.nn.functional.cross_entropy(logits, target, reduction="sum")
            (grad,) = torch.autograd.grad(loss, gates)
        total += grad.abs().sum(0).double().cpu()
    raw = total.numpy()
    out = raw.copy()
    if normalise:
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        out = out / np.where(norms > 0, norms, 1.0)
    return Importance(raw, out, normalise, len(prep.eval))


def pruning_masks(importance: np.ndarray, step: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Masks pruning the least important heads first: fractions ``(S,)`` and bool ``(S, layers, heads)``.

    Ties break by (layer, head) order. Fractions 0, step, ..., 1.
    """
    layers, heads = importance.shape
    total = layers * heads
    order = np.argsort(importance.ravel(), kind="stable")  # least important first
    fractions = np.round(np.arange(0, 1 + 1e-9, step), 6)
    masks = np.zeros((len(fractions), layers, heads), bool)
    for s, frac in enumerate(fractions):
        flat = np.zeros(total, bool)
        flat[order[: int(round(frac * total))]] = True
        masks[s] = flat.reshape(layers, heads)
    return fractions, masks


def pruning_curve(
    prep: Prepared, importance: np.ndarray, metric: str, mode: str = "zero", step: float = 0.1
) -> tuple[np.ndarray, np.ndarray]:
    """Score after pruning each fraction of heads: ``(fractions (S,), scores (S,))``, one batched pass."""
    fractions, masks = pruning_masks(importance, step)
    logits = predict_configs(prep.tm, prep.enc, prep.eval, masks, mode)  # (S, n, k)
    pred = predictions(logits, prep.targets.task)
    return fractions, scores(prep.targets.y[prep.eval], pred, metric, len(prep.targets.classes))


def majority_baseline(prep: Prepared, metric: str) -> float:
    """The score of always predicting the evaluation split's majority class (regression: a constant, whose
    correlation is taken as 0): the chance line of the pruning curve."""
    y = prep.targets.y[prep.eval]
    if prep.targets.task != "classification":
        return 0.0
    values, counts = np.unique(y, return_counts=True)
    pred = np.full((1, len(y)), values[int(np.argmax(counts))])
    with np.errstate(invalid="ignore", divide="ignore"):
        out = float(scores(y, pred, metric, len(prep.targets.classes))[0])
    return out if np.isfinite(out) else 0.0


def write_importance(
    prep: Prepared,
    out_dir: str | Path,
    normalise: bool = True,
    metric: str | None = None,
    mode: str = "zero",
    step: float = 0.1,
    about: dict | None = None,
) -> dict:
    """Write ``importance.csv`` (``layer, head, importance, raw``), ``importance.png``, ``pruning.csv``
    (``fraction, heads_pruned, score``), ``pruning.png`` and ``importance.json``; returns the summary.
    ``about``: ``model`` and ``data`` names for the figure titles."""
    from attnx.ablation.figures import head_grid_figure, pruning_curve_figure
    from attnx.report.style import about_line, data_name

    metric = metric or default_metric(prep.targets.task)
    check_metric(metric, prep.targets.task)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    imp = head_importance(prep, normalise)
    layers, heads = imp.scores.shape
    about = about or {}
    subtitle = about_line(about.get("model"), data_name(about.get("data")), len(prep.eval), "eval examples")
    with open(out / "importance.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["layer", "head", "importance", "raw"])
        for layer in range(layers):
            for head in range(heads):
                w.writerow([layer, head, f"{imp.scores[layer, head]:.6g}", f"{imp.raw[layer, head]:.6g}"])
    head_grid_figure(
        imp.scores,
        None,
        out / "importance.png",
        title="head importance (Michel et al. 2019)" + (", per-layer l2-normalised" if normalise else ""),
        label="importance",
        subtitle=subtitle,
    )
    fractions, curve = pruning_curve(prep, imp.scores, metric, mode, step)
    with open(out / "pruning.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["fraction", "heads_pruned", "score"])
        for frac, s in zip(fractions, curve, strict=True):
            w.writerow([f"{frac:.2f}", int(round(frac * layers * heads)), f"{s:.6f}"])
    chance = majority_baseline(prep, metric)
    pruning_curve_figure(
        fractions, curve, out / "pruning.png", metric, f"pruning in importance order ({mode})",
        unpruned=float(curve[0]), chance=chance,
        chance_label="majority class" if prep.targets.task == "classification" else "constant prediction",
        subtitle=subtitle,
    )
    summary = {
        "metric": metric,
        "mode": mode,
        "normalised": normalise,
        "examples": imp.n_examples,
        "split": {"train": len(prep.train), "eval": len(prep.eval)},
        "seed": prep.seed,
        "unpruned_score": float(curve[0]),
        "majority_baseline": chance,
        "pruning": [{"fraction": float(f), "score": float(s)} for f, s in zip(fractions, curve, strict=True)],
    }
    with open(out / "importance.json", "w") as fh:
        json.dump(summary, fh, indent=2)
    return summary
