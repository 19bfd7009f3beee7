"""The model an ablation scores: an encoder loaded with the ablation attention function plus its task head
(a fine-tuned classifier's weights, or a linear probe fitted later on pooled features)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from attnx.ablation.masking import ATTN_ABLATE
from attnx.ablation.probe import LinearProbe
from attnx.engine.device import resolve_device as engine_device
from attnx.engine.model import LoadedModel, load_model, resolve_model_dir
from attnx.errors import AttnxError, ModelError

POOLINGS = ("mean", "cls", "pooler")


@dataclass
class TaskModel:
    """An encoder loaded with the ablation attention function, plus what turns its output into logits.

    ``classifier``: ``(weight (k, hidden), bias (k,))`` of a BertForSequenceClassification head applied
    to the pooler output, or None when a ``probe`` on pooled features is used instead.
    """

    lm: LoadedModel
    classifier: tuple[torch.Tensor, torch.Tensor] | None
    task: str  # "classification" | "regression"
    num_labels: int
    label2id: dict[str, int] | None
    pooling: str = "mean"
    probe: LinearProbe | None = None
    max_length: int = 128

    def features(self, hidden: torch.Tensor, mask01: torch.Tensor) -> torch.Tensor:
        """Pooled features float32 ``(rows, hidden)``.

        ``hidden`` ``(rows, T, hidden)``, ``mask01`` ``(rows, T)`` (1 = real token).
        """
        if self.classifier is not None or self.pooling == "pooler":
            pooler = self.lm.model.pooler
            if pooler is None:
                raise ModelError(f"{self.lm.name}: model has no pooler layer (use --pool mean or cls)")
            return pooler(hidden).float()
        if self.pooling == "cls":
            return hidden[:, 0].float()
        m = mask01.to(hidden.dtype)[:, :, None]  # (rows, T, 1)
        return ((hidden * m).sum(1) / m.sum(1).clamp_min(1)).float()

    def logits(self, hidden: torch.Tensor, mask01: torch.Tensor) -> torch.Tensor:
        """Logits ``(rows, k)`` float32 (regression: ``(rows, 1)`` values)."""
        feats = self.features(hidden, mask01)
        if self.classifier is not None:
            weight, bias = self.classifier
            return feats @ weight.to(feats.device).T + bias.to(feats.device)
        if self.probe is None:
            raise AttnxError("the probe is not fitted yet")
        return self.probe(feats)


def _read_classifier(model_dir: str) -> tuple[torch.Tensor, torch.Tensor] | None:
    from pathlib import Path

    from safetensors import safe_open

    for file in sorted(Path(model_dir).glob("*.safetensors")):
        with safe_open(str(file), framework="pt") as fh:
            keys = set(fh.keys())
            for prefix in ("classifier.", "bert.classifier."):
                if prefix + "weight" in keys and prefix + "bias" in keys:
                    return fh.get_tensor(prefix + "weight").float(), fh.get_tensor(prefix + "bias").float()
    return None


def load_task_model(
    name: str,
    probe: str | None = None,
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
    pooling: str = "mean",
    seed: int = 0,
    max_length: int = 128,
) -> TaskModel:
    """Load ``name`` with the ablation attention function and its task head.

    Without ``probe`` the directory must hold a BertForSequenceClassification checkpoint
    (``classifier.weight``/``classifier.bias``); ``probe="logistic"`` fits a probe later
    (:func:`fit_probe`) on the unablated encoder's pooled output.
    """
    if probe not in (None, "logistic"):
        raise AttnxError(f"--probe {probe!r}: only 'logistic' is supported")
    if pooling not in POOLINGS:
        raise AttnxError(f"--pool {pooling!r}: use one of {', '.join(POOLINGS)}")
    lm = load_model(name, device=device, dtype=dtype, seed=seed, attn_implementation=ATTN_ABLATE)
    family = getattr(lm, "family", "bert")
    if family != "bert":
        raise ModelError(
            f"{name}: ablate and importance run BERT checkpoints only (this is {family}); their layer-by-layer "
            "ablation pass follows BertModel's layout - extract and analyze support every family"
        )
    for p in lm.model.parameters():
        p.requires_grad_(False)
    if probe is not None:
        return TaskModel(lm, None, "auto", 0, None, pooling, None, max_length)
    head = None
    if lm.path:
        head = _read_classifier(str(resolve_model_dir(name)))
    if head is None:
        raise ModelError(
            f"{name}: no classification head (classifier.weight) in the weights; "
            "give a fine-tuned BertForSequenceClassification directory or use --probe logistic"
        )
    config = lm.model.config
    num_labels = int(head[0].shape[0])
    problem = getattr(config, "problem_type", None)
    task = "regression" if num_labels == 1 or problem == "regression" else "classification"
    label2id = {str(k): int(v) for k, v in (getattr(config, "label2id", None) or {}).items()}
    return TaskModel(lm, head, task, num_labels, label2id, "pooler", None, max_length)


def n_heads_shape(tm: TaskModel) -> tuple[int, int]:
    return len(tm.lm.model.encoder.layer), tm.lm.num_heads


def resolve_device(device: str | None) -> tuple[str, torch.dtype]:
    """The device of :func:`attnx.engine.device.resolve_device` (the one ``--device`` rule) and the model dtype
    on it: float16 on CUDA, else float32."""
    dev = engine_device(device)
    return str(dev), torch.float16 if dev.type == "cuda" else torch.float32
