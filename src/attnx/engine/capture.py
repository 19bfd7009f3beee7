"""attnx's own attention function: eager attention that hands each layer's probabilities to a collector.

Registered with transformers' ``AttentionInterface`` under ``ATTN_IMPLEMENTATION`` (and with
``AttentionMaskInterface``, or padding would silently be attended). Compared with transformers'
``output_attentions=True`` it (a) takes the softmax in float32 whatever the model dtype, and (b)
lets a collector crop and copy each layer's maps as they are made instead of keeping every layer's
padded ``(batch, heads, T, T)`` tensor until the forward pass ends.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import torch
from transformers import AttentionInterface
from transformers.masking_utils import AttentionMaskInterface, eager_mask

ATTN_IMPLEMENTATION = "attnx_capture"

# collector(layer_idx, probs) with probs float32 (batch, heads, T, T); called once per layer. Layers are
# numbered in call order within the context (one forward pass per context): DistilBERT's attention
# modules carry no layer index and ALBERT runs one shared module at every depth.
Collector = Callable[[int, torch.Tensor], None]

_local = threading.local()


class capturing:
    """Context manager: route the attention probabilities of forward passes on this thread to ``collector``."""

    def __init__(self, collector: Collector) -> None:
        self.collector = collector

    def __enter__(self) -> capturing:
        self._previous = getattr(_local, "collector", None), getattr(_local, "calls", 0)
        _local.collector = self.collector
        _local.calls = 0
        return self

    def __exit__(self, *exc: object) -> None:
        _local.collector, _local.calls = self._previous


def attention_probs(
    query: torch.Tensor,  # (batch, heads, T, head_dim)
    key: torch.Tensor,  # (batch, heads, T, head_dim)
    attention_mask: torch.Tensor | None,  # additive (or boolean keep-mask), broadcastable to (batch, heads, T, T)
    scaling: float | None,
) -> torch.Tensor:
    """Eager attention probabilities ``(batch, heads, T, T)``, float32 whatever the model dtype."""
    if scaling is None:
        scaling = query.size(-1) ** -0.5
    # in place where possible: every (batch, heads, T, T) temporary is a large allocation
    scores = torch.matmul(query, key.transpose(2, 3))  # (batch, heads, T, T)
    scores = scores.float() if scores.dtype != torch.float32 else scores
    scores.mul_(scaling)
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:
            scores.masked_fill_(~attention_mask, float("-inf"))
        else:
            scores.add_(attention_mask)
    return torch.softmax(scores, dim=-1)


def attention_output(module: torch.nn.Module, probs: torch.Tensor, value: torch.Tensor, dropout: float) -> torch.Tensor:
    """``probs @ value`` in the model dtype: ``(batch, heads, T, head_dim)``."""
    weights = probs.to(value.dtype)
    if dropout and module.training:
        weights = torch.nn.functional.dropout(weights, p=dropout)
    return torch.matmul(weights, value)


def capture_attention_forward(
    module: torch.nn.Module,
    query: torch.Tensor,  # (batch, heads, T, head_dim)
    key: torch.Tensor,  # (batch, heads, T, head_dim)
    value: torch.Tensor,  # (batch, heads, T, head_dim)
    attention_mask: torch.Tensor | None,  # additive, broadcastable to (batch, heads, T, T)
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs: object,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    probs = attention_probs(query, key, attention_mask, scaling)  # fp32 softmax even for fp16/bf16 models
    collector = getattr(_local, "collector", None)
    if collector is not None:
        layer = _local.calls
        _local.calls = layer + 1
        collector(layer, probs)
    out = attention_output(module, probs, value, dropout)
    return out.transpose(1, 2).contiguous(), None  # (batch, T, heads, head_dim)


AttentionInterface.register(ATTN_IMPLEMENTATION, capture_attention_forward)
AttentionMaskInterface.register(ATTN_IMPLEMENTATION, eager_mask)
