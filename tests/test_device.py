"""One ``--device`` rule for extraction, ablation/importance and bench: auto picks CUDA when there is one, an
explicit CUDA device without CUDA is refused in one line (ablation used to accept it and fail later)."""

from __future__ import annotations

import pytest
import torch

from attnx.ablation.task_model import resolve_device as ablation_device
from attnx.engine.device import resolve_device
from attnx.errors import AttnxError


def test_without_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == resolve_device(None) == resolve_device("cpu") == torch.device("cpu")
    assert ablation_device("auto") == ablation_device(None) == ("cpu", torch.float32)
    for device in ("cuda", "cuda:1"):
        with pytest.raises(AttnxError, match=f"--device {device}: CUDA is not available on this machine"):
            resolve_device(device)
        with pytest.raises(AttnxError, match=f"--device {device}: CUDA is not available on this machine"):
            ablation_device(device)
    with pytest.raises(AttnxError, match="--device 'gpu0': not a torch device"):
        resolve_device("gpu0")


def test_with_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == resolve_device(None) == torch.device("cuda")
    assert resolve_device("cuda:1") == torch.device("cuda:1") and resolve_device("cpu") == torch.device("cpu")
    assert ablation_device("auto") == ("cuda", torch.float16)
    assert ablation_device("cuda:1") == ("cuda:1", torch.float16)
    assert ablation_device("cpu") == ("cpu", torch.float32)
