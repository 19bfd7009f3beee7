"""attnx's ablation attention function: eager attention with per-row head masks and head gates.

transformers 5 removed ``head_mask``, so switching heads off happens here. The function is registered
with transformers' ``AttentionInterface`` under ``ATTN_ABLATE`` and with ``AttentionMaskInterface``
(without the latter ``create_bidirectional_mask`` returns None and padding is silently attended).
Load the encoder with ``load_model(..., attn_implementation=ATTN_ABLATE)``.

Two ablation modes, chosen per forward pass with :class:`ablating`:

- ``uniform`` (Kovaleva et al. 2019, Sec. 5): the head's attention probabilities are replaced by
  uniform attention over the real (non-padding) key tokens, ``1 / n_real``;
- ``zero`` (Michel et al. 2019, Sec. 2): the head's output ``softmax(QK^T) V`` is removed (set to 0)
  before the output projection.

The mask is per *row* of the batch, so many ablation configurations can ride in one batch. A
differentiable per-head gate ``xi`` (Michel et al. 2019, Eq. 2) multiplies each head's output; its
gradient gives head importance.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import torch
from transformers import AttentionInterface
from transformers.masking_utils import AttentionMaskInterface, eager_mask

from attnx.engine.capture import attention_output, attention_probs

ATTN_ABLATE = "attnx_ablate"
MODES = ("uniform", "zero")

_local = threading.local()


@dataclass
class AblationState:
    """What the attention function applies on this thread.

    ``mode``: ``uniform`` or ``zero``. ``row_masks``: bool ``(rows, layers, heads)``, True = the head is
    switched off for that row of the batch, or None (no ablation). ``gates``: float ``(rows, layers, heads)``
    multiplying each head's output (may require grad; one copy per row gives per-example gradients), or None.
    """

    mode: str = "uniform"
    row_masks: torch.Tensor | None = None
    gates: torch.Tensor | None = None


class ablating:
    """Context manager: forward passes on this thread apply ``state`` (nested uses restore the previous)."""

    def __init__(self, state: AblationState) -> None:
        if state.mode not in MODES:
            raise ValueError(f"unknown ablation mode {state.mode!r} (use {' or '.join(MODES)})")
        self.state = state

    def __enter__(self) -> AblationState:
        self._previous = getattr(_local, "state", None)
        _local.state = self.state
        return self.state

    def __exit__(self, *exc: object) -> None:
        _local.state = self._previous


def current_state() -> AblationState | None:
    return getattr(_local, "state", None)


def key_valid_from_mask(attention_mask: torch.Tensor | None, batch: int, keys: int) -> torch.Tensor | None:
    """Real-key indicator, float32 ``(batch, 1, q|1, keys)``, from an additive mask (0 = attend), or None."""
    if attention_mask is None:
        return None
    mask = attention_mask
    if mask.dtype == torch.bool:
        return mask.float()
    threshold = torch.finfo(mask.dtype).min / 2
    return (mask > threshold).float().expand(batch, -1, -1, keys)


def ablate_attention_forward(
    module: torch.nn.Module,
    query: torch.Tensor,  # (batch, heads, T, head_dim)
    key: torch.Tensor,  # (batch, heads, T, head_dim)
    value: torch.Tensor,  # (batch, heads, T, head_dim)
    attention_mask: torch.Tensor | None,  # additive, broadcastable to (batch, heads, T, T)
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs: object,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Eager attention (float32 softmax) with the thread's :class:`AblationState` applied.

    Returns ``(out, None)`` with ``out`` ``(batch, T, heads, head_dim)`` in ``value``'s dtype.
    """
    batch, heads, t_q, _ = query.shape
    t_k = key.shape[2]
    probs = attention_probs(query, key, attention_mask, scaling)  # (batch, heads, T, T) fp32
    state = current_state()
    layer = module.layer_idx
    if state is not None and state.row_masks is not None:
        off = state.row_masks[:, layer, :]  # (batch, heads) bool
        if off.shape[0] != batch:
            raise ValueError(f"ablation mask has {off.shape[0]} rows for a batch of {batch}")
        off4 = off[:, :, None, None]  # (batch, heads, 1, 1)
        if state.mode == "uniform":
            valid = key_valid_from_mask(attention_mask, batch, t_k)  # (batch, 1, q|1, T) or None
            if valid is None:
                uniform = torch.full((1, 1, 1, t_k), 1.0 / t_k, device=probs.device)
            else:
                uniform = valid / valid.sum(-1, keepdim=True).clamp_min(1.0)
            probs = torch.where(off4, uniform.expand_as(probs), probs)
        else:  # zero: the head's output softmax(QK^T)V is removed
            probs = probs.masked_fill(off4, 0.0)
    out = attention_output(module, probs, value, dropout)  # (batch, heads, T, head_dim)
    if state is not None and state.gates is not None:
        out = out * state.gates[:, layer].to(out.dtype)[:, :, None, None]  # gates (batch, heads)
    return out.transpose(1, 2).contiguous(), None  # (batch, T, heads, head_dim)


AttentionInterface.register(ATTN_ABLATE, ablate_attention_forward)
AttentionMaskInterface.register(ATTN_ABLATE, eager_mask)
