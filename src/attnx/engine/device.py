"""Which torch device a run uses: the one rule for ``--device`` (extraction, ablation, importance)."""

from __future__ import annotations

import torch

from attnx.errors import AttnxError


def resolve_device(device: str | None) -> torch.device:
    """``"auto"`` or None: CUDA when available, else the CPU; an explicit device as given, except a CUDA device
    on a machine without CUDA, which is refused with a one-line :class:`AttnxError`."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise AttnxError(f"--device {device!r}: not a torch device ({exc})") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise AttnxError(f"--device {device}: CUDA is not available on this machine")
    return dev
