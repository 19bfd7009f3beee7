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


def resolve_device_name(device: str | None) -> str:
    """``"auto"`` or None: ``"cuda"`` when CUDA is available, else ``"cpu"``; an explicit device as torch names it
    (``"cuda:1"``), except a CUDA device on a machine without CUDA, which is refused with a one-line
    :class:`AttnxError`. torch is imported only where the answer needs it: ``auto`` on a machine with a GPU
    driver's device node, an explicit CUDA device (torch always decides those), or a name other than cpu /
    cuda[:N]."""
    if device in (None, "auto"):
        return "cuda" if cuda_may_be_available() and _torch_cuda() else "cpu"
    if device == "cpu":
        return "cpu"
    if not re.fullmatch(r"cuda(:\d+)?", device):
        import torch

        try:
            device = str(torch.device(device))
        except RuntimeError as exc:
            raise AttnxError(f"--device {device!r}: not a torch device ({exc})") from None
    if device.startswith("cuda") and not _torch_cuda():
        raise AttnxError(f"--device {device}: CUDA is not available on this machine")
    return device


def resolve_device(device: str | None) -> torch.device:
    """:func:`resolve_device_name` as a ``torch.device``."""
    import torch

    return torch.device(resolve_device_name(device))


def _torch_cuda() -> bool:
    import torch

    return torch.cuda.is_available()
