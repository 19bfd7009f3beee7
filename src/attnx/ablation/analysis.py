"""Ablation studies end to end: score every configuration, bootstrap intervals, write the public outputs.

Outputs in the output folder (a public contract; 0-based layers and heads):

- ``heads.csv``: ``layer, head, score, delta, ci_low, ci_high`` (delta = score - unablated score; the
  interval is the seeded percentile bootstrap interval of the score);
- ``layers.csv``: ``layer, score, delta`` (the whole layer switched off);
- ``sets.csv`` (only with user head sets): ``heads, score, delta, ci_low, ci_high``;
- ``summary.json``: unablated score, metric, mode, split sizes, seed, the per-layer row, the heads whose
  removal improves the score (count and list), and for each the flag whether the improvement exceeds the
  interval (``ci_low`` above the unablated score);
- ``heads.png``: layers x heads grid in the style of Kovaleva et al. (2019, Fig. 6).
"""

from __future__ import annotations

import csv
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from attnx.ablation.configs import AblationConfigs, build_configs, check_grid
from attnx.ablation.forward import predict_configs, predictions
from attnx.ablation.metrics import bootstrap_scores, check_metric, default_metric, percentile_ci, scores
from attnx.ablation.prepare import Prepared
from attnx.ablation.task_model import n_heads_shape


@dataclass(frozen=True)
class AblationResult:
    """Scores of C configurations. ``score``/``ci_low``/``ci_high``: float64 ``(C,)``; config 0 unablated."""

    configs: AblationConfigs
    score: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    metric: str
    mode: str
    task: str
    n_train: int
    n_eval: int
    seed: int
    n_boot: int
    seconds: float
    layers: int
    heads: int

    @property
    def base(self) -> float:
        return float(self.score[0])

    def head_grid(self) -> np.ndarray:
        """Scores of single-head ablations, float64 ``(layers, heads)`` (NaN where not run)."""
        grid = np.full((self.layers, self.heads), np.nan)
        for c, kind in enumerate(self.configs.kind):
            if kind == "head":
                grid[self.configs.layer[c], self.configs.head[c]] = self.score[c]
        return grid

    def significant_grid(self) -> np.ndarray:
        """bool ``(layers, heads)``: the ablated score's interval lies wholly above the unablated score."""
        sig = np.zeros((self.layers, self.heads), bool)
        for c, kind in enumerate(self.configs.kind):
            if kind == "head":
                sig[self.configs.layer[c], self.configs.head[c]] = self.ci_low[c] > self.base
        return sig


def run_ablation(
    prep: Prepared,
    mode: str = "uniform",
    metric: str | None = None,
    grid: bool = True,
    head_sets: list[list[tuple[int, int]]] | None = None,
    n_boot: int = 1000,
    share_prefix: bool = True,
) -> AblationResult:
    """Evaluate the unablated model, every single head and whole layer (``grid``) and each head set."""
    check_grid(grid, head_sets)
    task = prep.targets.task
    metric = metric or default_metric(task)
    check_metric(metric, task)
    layers, heads = n_heads_shape(prep.tm)
    configs = build_configs(layers, heads, grid, head_sets)
    t0 = time.perf_counter()
    logits = predict_configs(prep.tm, prep.enc, prep.eval, configs.masks, mode, share_prefix)  # (C, n, k)
    seconds = time.perf_counter() - t0
    pred = predictions(logits, task)  # (C, n)
    y = prep.targets.y[prep.eval]
    k = len(prep.targets.classes)
    score = scores(y, pred, metric, k)
    if n_boot > 0:
        boot = bootstrap_scores(y, pred, metric, k, n_boot, prep.seed)
        low, high = percentile_ci(boot)
    else:
        low = high = np.full(len(configs), np.nan)
    return AblationResult(
        configs,
        score,
        low,
        high,
        metric,
        mode,
        task,
        len(prep.train),
        len(prep.eval),
        prep.seed,
        n_boot,
        seconds,
        layers,
        heads,
    )


def _f(x: float) -> str:
    return f"{x:.6f}"


def write_ablation(result: AblationResult, out_dir: str | Path, extra: dict | None = None) -> dict:
    """Write the CSVs, ``summary.json`` and ``heads.png`` to ``out_dir``; returns the summary."""
    from attnx.ablation.figures import head_grid_figure
    from attnx.report.style import about_line, data_name

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg, base = result.configs, result.base
    improving: list[dict] = []
    with open(out / "heads.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["layer", "head", "score", "delta", "ci_low", "ci_high"])
        for c, kind in enumerate(cfg.kind):
            if kind != "head":
                continue
            s = float(result.score[c])
            w.writerow(
                [cfg.layer[c], cfg.head[c], _f(s), _f(s - base), _f(result.ci_low[c]), _f(result.ci_high[c])]
            )
            if s > base:
                improving.append(
                    {
                        "layer": int(cfg.layer[c]),
                        "head": int(cfg.head[c]),
                        "delta": s - base,
                        "beyond_interval": bool(result.ci_low[c] > base),
                    }
                )
    layer_row: list[dict] = []
    with open(out / "layers.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["layer", "score", "delta"])
        for c, kind in enumerate(cfg.kind):
            if kind == "layer":
                s = float(result.score[c])
                w.writerow([cfg.layer[c], _f(s), _f(s - base)])
                layer_row.append({"layer": int(cfg.layer[c]), "score": s, "delta": s - base})
    sets: list[dict] = []
    if "set" in cfg.kind:
        with open(out / "sets.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["heads", "score", "delta", "ci_low", "ci_high"])
            for c, kind in enumerate(cfg.kind):
                if kind == "set":
                    s = float(result.score[c])
                    w.writerow(
                        [cfg.label[c], _f(s), _f(s - base), _f(result.ci_low[c]), _f(result.ci_high[c])]
                    )
                    sets.append(
                        {
                            "heads": cfg.label[c],
                            "score": s,
                            "delta": s - base,
                            "ci_low": float(result.ci_low[c]),
                            "ci_high": float(result.ci_high[c]),
                        }
                    )
    summary = {
        "unablated_score": base,
        "unablated_ci": [float(result.ci_low[0]), float(result.ci_high[0])],
        "metric": result.metric,
        "mode": result.mode,
        "task": result.task,
        "split": {"train": result.n_train, "eval": result.n_eval},
        "seed": result.seed,
        "bootstrap": {"resamples": result.n_boot, "level": 0.95, "method": "percentile, paired over configs"},
        "layers": result.layers,
        "heads": result.heads,
        "configurations": len(cfg),
        "layer_ablation": layer_row,
        "improving_heads_count": len(improving),
        "improving_heads": improving,
        "improving_beyond_interval_count": sum(h["beyond_interval"] for h in improving),
        "head_sets": sets,
        "seconds_forward": result.seconds,
        **(extra or {}),
    }
    with open(out / "summary.json", "w") as fh:
        json.dump(summary, fh, indent=2)
    if "head" in cfg.kind:
        layer_scores = np.full(result.layers, np.nan)
        for row in layer_row:
            layer_scores[row["layer"]] = row["score"]
        head_grid_figure(
            result.head_grid(),
            base,
            out / "heads.png",
            marks=result.significant_grid(),
            layer_scores=layer_scores,
            title=f"{result.metric} with one head ablated ({result.mode}); unablated {base:.3f}",
            label=result.metric,
            subtitle=about_line((extra or {}).get("model"), data_name((extra or {}).get("data")), result.n_eval,
                                "eval examples"),
        )
    return summary
