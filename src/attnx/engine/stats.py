"""On-device map features for ``attnx extract --stats-only``: the definitions of
:mod:`attnx.kernels.features` (same names, same order, same row-sum convention), computed in torch on a
padded batch's float32 probabilities while they are on the device, so only ``layers x heads x features``
numbers per record leave it instead of ``layers x heads x l^2`` maps.

Checked against :func:`attnx.kernels.reference.map_features_ref` (the numpy twin of the numba kernel) by
``tests/test_stats_only.py``.
"""

from __future__ import annotations

import torch

from attnx.kernels.names import NF, F


def batch_features(
    probs: torch.Tensor,  # (B, H, T, T) float32, rows = queries; padded keys hold 0
    lengths: torch.Tensor,  # (B,) int64 real lengths l
    len_a: torch.Tensor,  # (B,) int64 tokens of segment A (= l for single sentences)
    sep: torch.Tensor,  # (B, T) bool: special tokens at positions > 0 ([SEP]s)
    punct: torch.Tensor,  # (B, T) bool: punctuation wordpieces that are not special
) -> torch.Tensor:
    """Row sums of every feature of every map: ``(B, H, NF)`` float32 (means = sum / l, as the kernels)."""
    b, h, t, _ = probs.shape
    dev = probs.device
    pos = torch.arange(t, device=dev)
    rows = (pos[None, :] < lengths[:, None]).to(probs.dtype)  # (B, T) real query rows
    p = probs * rows[:, None, :, None]  # padded query rows zeroed: (B, H, T, T)
    out = torch.full((b, h, NF), float("nan"), dtype=probs.dtype, device=dev)  # a feature not set below stays NaN
    colsum = p.sum(dim=2)  # (B, H, T) mass each key column receives
    sepf, punctf = sep.to(probs.dtype), punct.to(probs.dtype)
    out[..., F["cls"]] = colsum[..., 0]
    out[..., F["sep"]] = (colsum * sepf[:, None, :]).sum(-1)
    sep_only = torch.where(sep[:, None, None, :], p, torch.zeros((), dtype=p.dtype, device=dev))
    out[..., F["sep_max"]] = sep_only.amax(dim=-1).sum(-1)
    out[..., F["punct"]] = (colsum * punctf[:, None, :]).sum(-1)
    out[..., F["self"]] = torch.diagonal(p, 0, dim1=-2, dim2=-1).sum(-1)
    out[..., F["prev"]] = torch.diagonal(p, -1, dim1=-2, dim2=-1).sum(-1)  # P[i, i-1], i >= 1
    out[..., F["next"]] = torch.diagonal(p, 1, dim1=-2, dim2=-1).sum(-1)  # P[i, i+1]: 0 past the last real key
    dist = (pos[:, None] - pos[None, :]).abs().to(probs.dtype)  # (T, T)
    out[..., F["distance"]] = (p * dist).sum((-2, -1))
    plogp = torch.special.xlogy(p, p)  # 0 ln 0 = 0
    out[..., F["entropy"]] = -plogp.sum((-2, -1))
    out[..., F["cls_entropy"]] = -plogp[:, :, 0, :].sum(-1)
    out[..., F["max_weight"]] = p.amax(dim=-1).sum(-1)
    seg = (pos[None, :] >= len_a[:, None]).to(torch.int8)  # (B, T) 0 = A, 1 = B
    same = (seg[:, :, None] == seg[:, None, :]).to(probs.dtype)  # (B, T, T)
    out[..., F["own_segment"]] = (p * same[:, None]).sum((-2, -1))
    top = colsum.topk(min(3, t), dim=-1).values  # padded columns have sum 0, so l < 3 sums all l columns
    out[..., F["col_max"]] = top[..., 0]
    out[..., F["col_top3"]] = top.sum(-1)
    out[..., F["band2"]] = (
        torch.diagonal(p, -2, dim1=-2, dim2=-1).sum(-1) + torch.diagonal(p, 2, dim1=-2, dim2=-1).sum(-1)
    )  # padded keys hold 0
    out[..., F["col_sq"]] = (colsum * colsum).sum(-1) / lengths[:, None].to(probs.dtype)
    keyok = ~(sep | (pos[None, :] == 0))  # (B, T) keys that are neither [CLS] nor a [SEP]
    far = (dist > 1).to(probs.dtype)  # (T, T)
    blk = same * far[None] * keyok[:, None, :].to(probs.dtype)  # (B, T, T)
    out[..., F["seg_block"]] = (p * blk[:, None]).sum((-2, -1))
    out[..., F["map_max"]] = p.amax(dim=(-2, -1)) * lengths[:, None].to(probs.dtype)  # padded cells hold 0
    return out
