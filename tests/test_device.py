"""One ``--device`` rule for extraction, ablation/importance and bench: auto picks CUDA when there is one, an
explicit CUDA device without CUDA is refused in one line (ablation used to accept it and fail later)."""

from __future__ import annotations

import pytest
import torch

import attnx.engine.device as device_rule
from attnx.ablation.task_model import resolve_device as ablation_device
from attnx.engine.device import resolve_device, resolve_device_name
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
    monkeypatch.setattr(device_rule, "cuda_may_be_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == resolve_device(None) == torch.device("cuda")
    assert resolve_device("cuda:1") == torch.device("cuda:1") and resolve_device("cpu") == torch.device("cpu")
    assert ablation_device("auto") == ("cuda", torch.float16)
    assert ablation_device("cuda:1") == ("cuda:1", torch.float16)
    assert ablation_device("cpu") == ("cpu", torch.float32)


def test_a_machine_without_gpu_driver_nodes_is_cpu_without_asking_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    """On Linux without any GPU driver's device nodes torch.cuda cannot be available: auto is the CPU without
    asking torch (whose import a CPU run on ONNX Runtime never needs); where a node exists, torch decides. An
    explicit CUDA device is always torch's call (a driver may create its nodes on first use)."""
    asked: list[bool] = []

    def torch_says(answer: bool):  # noqa: ANN202
        return lambda: asked.append(answer) or answer

    monkeypatch.setattr(device_rule.sys, "platform", "linux")
    monkeypatch.setattr(device_rule, "GPU_NODES", ("/nonexistent/nvidiactl",))
    monkeypatch.setattr(device_rule, "_torch_cuda", torch_says(True))
    assert resolve_device_name("auto") == resolve_device_name(None) == resolve_device_name("cpu") == "cpu"
    assert asked == []
    assert resolve_device_name("cuda:0") == "cuda:0" and asked == [True]
    monkeypatch.setattr(device_rule, "_torch_cuda", torch_says(False))
    with pytest.raises(AttnxError, match="--device cuda:0: CUDA is not available"):
        resolve_device_name("cuda:0")
    assert asked == [True, False]
    monkeypatch.setattr(device_rule, "GPU_NODES", ("/dev/null",))  # a node that exists: torch is asked
    assert resolve_device_name("auto") == "cpu" and asked == [True, False, False]
    monkeypatch.setattr(device_rule, "_torch_cuda", torch_says(True))
    assert resolve_device_name("auto") == "cuda" and asked == [True, False, False, True]
