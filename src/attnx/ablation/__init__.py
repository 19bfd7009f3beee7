"""Switching heads off: batched head/layer ablation, head importance (Michel et al. 2019) and figures.

Library API (the CLI in ``attnx.cli.ablate`` is a thin wrapper)::

    tm = load_task_model("minilm", probe="logistic")
    prep = prepare(tm, read_labelled("sst2_dev.tsv"), seed=0)
    result = run_ablation(prep, mode="uniform")
    write_ablation(result, "out/")
"""

from attnx.ablation.analysis import AblationResult, run_ablation, write_ablation
from attnx.ablation.configs import build_configs
from attnx.ablation.data import read_labelled
from attnx.ablation.importance import head_importance, pruning_curve, write_importance
from attnx.ablation.prepare import prepare
from attnx.ablation.task_model import load_task_model

__all__ = [
    "AblationResult",
    "build_configs",
    "head_importance",
    "load_task_model",
    "prepare",
    "pruning_curve",
    "read_labelled",
    "run_ablation",
    "write_ablation",
    "write_importance",
]
