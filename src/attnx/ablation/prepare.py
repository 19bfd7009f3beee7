"""A task model made ready to evaluate: labels parsed, the evaluation subset chosen, the examples tokenised,
and (for a probe) the probe fitted on the unablated encoder's training features."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from attnx.ablation.batching import Encoded, encode
from attnx.ablation.data import LabelledData, Targets, parse_labels, split_indices
from attnx.ablation.forward import pooled_features
from attnx.ablation.probe import fit_logistic, fit_ridge
from attnx.ablation.task_model import TaskModel
from attnx.errors import InputError


@dataclass
class Prepared:
    """A task model ready to evaluate: targets of all examples, the evaluation subset and its encoding."""

    tm: TaskModel
    data: LabelledData
    targets: Targets
    enc: Encoded
    train: np.ndarray  # int64 indices into data (empty without a probe)
    eval: np.ndarray  # int64 indices into data
    seed: int


def prepare(
    tm: TaskModel,
    data: LabelledData,
    task: str = "auto",
    train_frac: float = 0.5,
    seed: int = 0,
    limit: int | None = None,
) -> Prepared:
    """Parse labels, split (probe only), and fit the probe on the unablated encoder's training features.

    ``limit``: keep a seeded random sample of at most this many examples first.
    """
    if limit is not None and limit < len(data):
        keep = np.sort(np.random.default_rng(seed).permutation(len(data))[:limit])
        data = data.subset(keep)
    if tm.classifier is not None:
        targets = parse_labels(data, task if task != "auto" else tm.task, tm.label2id, tm.num_labels)
        if targets.task != tm.task:
            raise InputError(data.path, None, f"the model's head is for {tm.task}, the task is {targets.task}")
        enc = encode(tm, data)
        return Prepared(tm, data, targets, enc, np.zeros(0, np.int64), np.arange(len(data), dtype=np.int64), seed)
    targets = parse_labels(data, task)
    train, held = split_indices(len(data), train_frac, seed, data.path)
    if targets.task == "classification" and len(np.unique(targets.y[train])) < 2:
        raise InputError(data.path, None, "the probe's training split holds a single class; use more data")
    enc = encode(tm, data)
    feats = pooled_features(tm, enc, train)
    if targets.task == "classification":
        tm.probe = fit_logistic(feats, targets.y[train], len(targets.classes), seed=seed)
    else:
        tm.probe = fit_ridge(feats, targets.y[train])
    tm.task = targets.task
    tm.num_labels = max(1, len(targets.classes))
    return Prepared(tm, data, targets, enc, train, held, seed)
