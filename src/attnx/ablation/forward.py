"""Batched head and layer ablation: every configuration of a batch in one pass over the data.

For a chunk of B examples and C ablation configurations (a bool mask ``(C, layers, heads)``), the
encoder runs layer by layer over up to ``B * C`` rows, each row carrying its configuration's head mask
(see :mod:`attnx.ablation.masking`). Configurations share their common prefix: layers below the first
layer a configuration ablates compute exactly what the unablated model computes, so they are run once
(the "trunk", B rows) and a configuration's rows branch off the trunk at its first ablated layer.
For single heads that halves the work of C independent passes; for C passes it also amortises
tokenisation, padding and per-call overhead.

The layer-by-layer pass and the trunk/branch scheduling depend on each other's tensor layouts, so they stay
together here; the inputs come from :mod:`attnx.ablation.batching`.
"""

from __future__ import annotations

import numpy as np
import torch

from attnx.ablation.batching import Encoded, chunks, pad
from attnx.ablation.masking import MODES, AblationState, ablating
from attnx.ablation.task_model import TaskModel
from attnx.errors import AttnxError


def forward_configs(
    tm: TaskModel,
    input_ids: torch.Tensor,  # (B, T) int64
    token_types: torch.Tensor,  # (B, T) int64
    mask01: torch.Tensor,  # (B, T) int64, 1 = real token
    masks: torch.Tensor,  # (C, layers, heads) bool
    mode: str,
    share_prefix: bool = True,
    gates: torch.Tensor | None = None,  # (C*B, layers, heads) float, or None
) -> torch.Tensor:
    """Logits of every configuration, float32 ``(C, B, k)``, in one layer-by-layer pass.

    Rows are configuration-major (``row = c * B + b``) for the configurations that have branched off the
    trunk. With ``share_prefix=False`` (or ``gates``) every configuration runs all layers itself.
    """
    from transformers.masking_utils import create_bidirectional_mask

    model = tm.lm.model
    n_layers = len(model.encoder.layer)
    n_cfg, batch = masks.shape[0], input_ids.shape[0]
    any_off = masks.any(-1)  # (C, layers)
    never = torch.full((n_cfg,), n_layers, device=masks.device)
    first = torch.where(any_off.any(-1), any_off.float().argmax(-1), never)  # (C,) first ablated layer
    if not share_prefix or gates is not None:
        first = torch.zeros_like(first)
    first = first.tolist()

    emb = model.embeddings(input_ids=input_ids, token_type_ids=token_types)  # (B, T, D)
    ext = create_bidirectional_mask(config=model.config, inputs_embeds=emb, attention_mask=mask01)
    trunk = emb
    active: list[int] = []  # configurations branched off so far, in row order
    hidden: torch.Tensor | None = None  # (len(active) * B, T, D)
    for layer_idx, layer in enumerate(model.encoder.layer):
        new = [c for c in range(n_cfg) if first[c] == layer_idx]
        if new:
            branch = trunk.repeat(len(new), 1, 1)  # (len(new) * B, T, D)
            hidden = branch if hidden is None else torch.cat([hidden, branch], 0)
            active += new
        need_trunk = any(f > layer_idx for f in first)
        parts, row_masks = [], []
        if need_trunk:
            parts.append(trunk)
            row_masks.append(torch.zeros(batch, *masks.shape[1:], dtype=torch.bool, device=masks.device))
        if active:
            parts.append(hidden)
            row_masks.append(masks[active].repeat_interleave(batch, 0))  # (len(active) * B, layers, heads)
        x = parts[0] if len(parts) == 1 else torch.cat(parts, 0)  # (rows, T, D)
        groups = x.shape[0] // batch
        m = None if ext is None else ext.repeat(groups, 1, 1, 1)  # (rows, 1, T, T)
        state = AblationState(mode, torch.cat(row_masks, 0) if len(row_masks) > 1 else row_masks[0], gates)
        with ablating(state):
            y = layer(x, m)  # (rows, T, D)
        if need_trunk:
            trunk, hidden = y[:batch], (y[batch:] if active else None)
        else:
            hidden = y
    slot = {c: k for k, c in enumerate(active)}
    per_cfg = [trunk if c not in slot else hidden[slot[c] * batch : (slot[c] + 1) * batch] for c in range(n_cfg)]
    flat = torch.cat(per_cfg, 0)  # (C * B, T, D), configuration-major
    logits = tm.logits(flat, mask01.repeat(n_cfg, 1))  # (C * B, k)
    return logits.reshape(n_cfg, batch, -1)


@torch.inference_mode()
def predict_configs(
    tm: TaskModel,
    enc: Encoded,
    subset: np.ndarray,
    configs: np.ndarray,
    mode: str,
    share_prefix: bool = True,
    configs_per_pass: int | None = None,
) -> np.ndarray:
    """Logits of each configuration on each example of ``subset``: float32 ``(C, len(subset), k)``.

    ``configs_per_pass``: at most this many configurations share a pass (1 = sequential evaluation, a
    separate pass over the data per configuration); default all.
    """
    if mode not in MODES:
        raise AttnxError(f"--mode {mode!r}: use one of {', '.join(MODES)}")
    device = tm.lm.device
    masks_all = torch.from_numpy(np.asarray(configs, bool)).to(device)
    n_cfg = masks_all.shape[0]
    step = n_cfg if configs_per_pass is None else configs_per_pass
    where = {int(i): k for k, i in enumerate(subset)}
    out: np.ndarray | None = None
    for c0 in range(0, n_cfg, step):
        masks = masks_all[c0 : c0 + step]
        for index in chunks(enc, subset, masks.shape[0], device):
            ids, types, mask01 = pad(enc, index, device)
            logits = forward_configs(tm, ids, types, mask01, masks, mode, share_prefix).cpu().numpy()
            if out is None:
                out = np.empty((n_cfg, len(subset), logits.shape[-1]), np.float32)
            out[c0 : c0 + masks.shape[0], [where[int(i)] for i in index]] = logits
    assert out is not None
    return out


@torch.inference_mode()
def pooled_features(tm: TaskModel, enc: Encoded, subset: np.ndarray) -> np.ndarray:
    """Unablated pooled features float32 ``(len(subset), hidden)``, in ``subset`` order."""
    device = tm.lm.device
    where = {int(i): k for k, i in enumerate(subset)}
    out = np.empty((len(subset), tm.lm.model.config.hidden_size), np.float32)
    for index in chunks(enc, subset, 1, device):
        ids, types, mask01 = pad(enc, index, device)
        with ablating(AblationState("zero")):
            hidden = tm.lm.model(input_ids=ids, token_type_ids=types, attention_mask=mask01).last_hidden_state
        out[[where[int(i)] for i in index]] = tm.features(hidden, mask01).cpu().numpy()
    return out


def predictions(logits: np.ndarray, task: str) -> np.ndarray:
    """Class ids int64 or regression values float64, ``(..., n)`` from logits ``(..., n, k)``."""
    if task == "regression":
        return logits[..., 0].astype(np.float64)
    return logits.argmax(-1).astype(np.int64)
