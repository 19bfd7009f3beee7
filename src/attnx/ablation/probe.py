"""Linear probes on frozen encoder features: multinomial logistic regression (torch L-BFGS) and ridge.

Features are standardised with the training split's mean and standard deviation; the fitted probe
keeps them, so it applies unchanged to features of ablated encoders.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class LinearProbe:
    """``logits = ((x - mean) / std) @ weight.T + bias``; weight ``(k, d)``, k classes (1: regression)."""

    mean: torch.Tensor  # (d,)
    std: torch.Tensor  # (d,)
    weight: torch.Tensor  # (k, d)
    bias: torch.Tensor  # (k,)
    task: str  # "classification" | "regression"

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` ``(n, d)`` -> logits ``(n, k)`` float32 (for regression ``(n, 1)`` predicted values)."""
        z = (x.float() - self.mean.to(x.device)) / self.std.to(x.device)
        return z @ self.weight.to(x.device).T + self.bias.to(x.device)


def _standardise(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mean = x.mean(0)
    std = x.std(0, unbiased=False).clamp_min(1e-6)
    return mean, std


def fit_logistic(
    x: np.ndarray | torch.Tensor,
    y: np.ndarray,
    num_classes: int,
    l2: float = 1e-2,
    seed: int = 0,
    max_iter: int = 200,
) -> LinearProbe:
    """Multinomial logistic regression, L2-penalised (``l2`` times the mean squared weight per class).

    ``x`` ``(n, d)`` features, ``y`` int ``(n,)`` class ids. Deterministic for a given ``seed``.
    """
    x = torch.as_tensor(np.asarray(x), dtype=torch.float64)
    yt = torch.as_tensor(np.asarray(y), dtype=torch.long)
    mean, std = _standardise(x)
    z = (x - mean) / std
    gen = torch.Generator().manual_seed(seed)
    w = (torch.randn(num_classes, x.shape[1], generator=gen, dtype=torch.float64) * 1e-3).requires_grad_(True)
    b = torch.zeros(num_classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS(
        [w, b],
        lr=1.0,
        max_iter=max_iter,
        tolerance_grad=1e-9,
        tolerance_change=1e-12,
        history_size=20,
        line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(z @ w.T + b, yt) + l2 * (w * w).sum() / num_classes
        loss.backward()
        return loss

    opt.step(closure)
    return LinearProbe(mean.float(), std.float(), w.detach().float(), b.detach().float(), "classification")


def fit_ridge(x: np.ndarray | torch.Tensor, y: np.ndarray, l2: float = 1.0) -> LinearProbe:
    """Ridge regression on standardised features (closed form); ``y`` float ``(n,)``."""
    x = torch.as_tensor(np.asarray(x), dtype=torch.float64)
    yt = torch.as_tensor(np.asarray(y), dtype=torch.float64)
    mean, std = _standardise(x)
    z = (x - mean) / std
    ym = yt.mean()
    a = z.T @ z + l2 * torch.eye(z.shape[1], dtype=torch.float64)
    w = torch.linalg.solve(a, z.T @ (yt - ym))
    return LinearProbe(mean.float(), std.float(), w[None, :].float(), ym.reshape(1).float(), "regression")
