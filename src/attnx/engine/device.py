"""Which torch device a run uses: the one rule for ``--device`` (extraction, ablation, importance)."""

from __future__ import annotations

import os
import re
import sys
from typing import TYPE_CHECKING

from attnx.errors import AttnxError

if TYPE_CHECKING:
    import torch

# device nodes a GPU driver creates (NVIDIA; NVIDIA Jetson/Tegra; AMD ROCm, which torch.cuda also drives; WSL's GPU
# bridge)
GPU_NODES = ("/dev/nvidiactl", "/dev/nvidia0", "/proc/driver/nvidia", "/dev/nvhost-ctrl-gpu", "/dev/nvgpu",
             "/dev/kfd", "/dev/dxg")


def cuda_may_be_available() -> bool:
    """False only where ``torch.cuda.is_available()`` cannot be true: a Linux machine with no GPU driver's device
    nodes, or macOS. Asking torch means importing it (about 0.9 s), which a CPU run on ONNX Runtime never needs."""
    if sys.platform == "darwin":
        return False
    if not sys.platform.startswith("linux"):
        return True
    return any(os.path.exists(node) for node in GPU_NODES)


def device_name(device: object) -> str:
    """``device`` (a name or a ``torch.device``) as torch names it ("cpu", "cuda:1"), or a one-line
    :class:`AttnxError`; torch is asked only about names other than cpu / cuda[:N]."""
    name = str(device)
    if re.fullmatch(r"cpu|cuda(:\d+)?", name):
        return name
    import torch

    try:
        return str(torch.device(name))
    except RuntimeError as exc:
        raise AttnxError(f"--device {name!r}: not a torch device ({exc})") from None


def resolve_device_name(device: str | None) -> str:
    """``"auto"`` or None: ``"cuda"`` when CUDA is available, else ``"cpu"``; an explicit device as torch names it
    (:func:`device_name`), except a CUDA device on a machine without CUDA, which is refused with a one-line
    :class:`AttnxError`. torch is imported only where the answer needs it: ``auto`` on a machine with a GPU
    driver's device node, an explicit CUDA device (torch always decides those), or a name other than cpu /
    cuda[:N]."""
    if device in (None, "auto"):
        return "cuda" if cuda_may_be_available() and _torch_cuda() else "cpu"
    name = device_name(device)
    if name.startswith("cuda") and not _torch_cuda():
        raise AttnxError(f"--device {name}: CUDA is not available on this machine")
    return name


def resolve_device(device: str | None) -> torch.device:
    """:func:`resolve_device_name` as a ``torch.device``."""
    import torch

    return torch.device(resolve_device_name(device))


def _torch_cuda() -> bool:
    import torch

    return torch.cuda.is_available()
