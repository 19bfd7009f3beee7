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
    """Multinomial logistic regression on standardised features, L2-penalised: minimises the mean
    cross-entropy plus ``l2`` times the squared weights summed over classes divided by the number of
    classes (scikit-learn's ``LogisticRegression``, lbfgs, ``C = classes / (2 n l2)``).

    ``x`` ``(n, d)`` features, ``y`` int ``(n,)`` class ids. Deterministic for a given ``seed``.
    """
    from sklearn.linear_model import LogisticRegression

    x = torch.as_tensor(np.asarray(x), dtype=torch.float64)
    mean, std = _standardise(x)
    z = ((x - mean) / std).numpy()
    y = np.asarray(y)
    binary = num_classes == 2 and len(np.unique(y)) == 2
    # the binary model's one weight vector v is the softmax's w1 - w0 = 2 w1: its penalty is l2 |v|^2 / 4
    c = (2.0 if binary else 1.0) * num_classes / (2 * len(y) * l2)
    model = LogisticRegression(C=c, max_iter=max_iter, tol=1e-8, random_state=seed)
    model.fit(z, y)
    w, b = np.zeros((num_classes, z.shape[1])), np.zeros(num_classes)
    if binary:
        # the binary model has one weight row for class 1; as a softmax over two classes: +-w/2
        w[1], b[1] = model.coef_[0] / 2, model.intercept_[0] / 2
        w[0], b[0] = -w[1], -b[1]
    else:
        w[model.classes_], b[model.classes_] = model.coef_, model.intercept_
    return LinearProbe(
        mean.float(), std.float(), torch.as_tensor(w, dtype=torch.float32), torch.as_tensor(b, dtype=torch.float32),
        "classification",
    )


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
