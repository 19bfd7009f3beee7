"""Head masking: the ablation attention function against a direct numpy computation, and the batched,
prefix-sharing forward against sequential forwards with one head hand-masked through hooks."""

from __future__ import annotations

import types

import numpy as np
import pytest
import torch

from attnx.ablation.configs import build_configs
from attnx.ablation.forward import forward_configs
from attnx.ablation.masking import ATTN_ABLATE, AblationState, ablate_attention_forward, ablating
from attnx.ablation.task_model import TaskModel
from attnx.engine.model import load_model


def _numpy_attention(q, k, v, valid, off, mode):
    """Reference: q, k, v (B, H, T, d); valid (B, T) bool; off (B, H) bool -> (B, T, H, d)."""
    scores = q @ np.swapaxes(k, -1, -2) / np.sqrt(q.shape[-1])  # (B, H, T, T)
    scores = np.where(valid[:, None, None, :], scores, -np.inf)
    probs = np.exp(scores - scores.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    for b in range(q.shape[0]):
        for h in range(q.shape[1]):
            if off[b, h]:
                if mode == "uniform":
                    probs[b, h] = valid[b] / valid[b].sum()
                else:
                    probs[b, h] = 0.0
    return np.swapaxes(probs @ v, 1, 2)


@pytest.mark.parametrize("mode", ["uniform", "zero"])
def test_attention_function_matches_numpy(mode):
    rng = np.random.default_rng(0)
    b, h, t, d = 3, 4, 6, 5
    q, k, v = (rng.standard_normal((b, h, t, d)).astype(np.float32) for _ in range(3))
    lengths = np.array([6, 4, 2])
    valid = np.arange(t)[None, :] < lengths[:, None]  # (B, T)
    additive = np.where(valid, 0.0, np.finfo(np.float32).min).astype(np.float32)[:, None, None, :]
    additive = np.broadcast_to(additive, (b, 1, t, t)).copy()
    off = np.zeros((b, 2, h), bool)  # (rows, layers, heads); the module is layer 1
    off[0, 1, 2] = True
    off[2, 1, 0] = True
    off[1, 0, 3] = True  # another layer: must not matter
    module = types.SimpleNamespace(layer_idx=1, training=False)
    with ablating(AblationState(mode, torch.from_numpy(off))):
        out, _ = ablate_attention_forward(
            module, *(torch.from_numpy(a) for a in (q, k, v)), torch.from_numpy(additive)
        )
    expected = _numpy_attention(q, k, v, valid, off[:, 1], mode)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-5, atol=1e-6)


def _hooked_logits(eager, weight, bias, ids, types_, mask01, layer, head, mode):
    """Sequential reference: eager BERT with head (layer, head) replaced inside a forward hook."""
    self_attn = eager.encoder.layer[layer].attention.self
    d = self_attn.attention_head_size
    sl = slice(head * d, (head + 1) * d)

    def hook(module, args, output):
        context = output[0].clone()  # (B, T, H*d)
        if mode == "zero":
            context[:, :, sl] = 0.0
        else:
            values = module.value(args[0])[:, :, sl]  # (B, T, d)
            m = mask01.float()[:, :, None]
            context[:, :, sl] = ((values * m).sum(1) / m.sum(1))[:, None, :]
        return (context, *output[1:])

    handle = self_attn.register_forward_hook(hook) if layer >= 0 else None
    try:
        pooled = eager(input_ids=ids, token_type_ids=types_, attention_mask=mask01).pooler_output
    finally:
        if handle is not None:
            handle.remove()
    return pooled @ weight.T + bias


@pytest.mark.parametrize("mode", ["uniform", "zero"])
@pytest.mark.parametrize("share_prefix", [True, False])
def test_batched_configs_match_hooked_sequential(mode, share_prefix):
    lm = load_model("random-bert-tiny", seed=3, attn_implementation=ATTN_ABLATE)
    eager = load_model("random-bert-tiny", seed=3, attn_implementation="eager").model
    gen = torch.Generator().manual_seed(0)
    weight, bias = torch.randn(3, 64, generator=gen), torch.randn(3, generator=gen)
    tm = TaskModel(lm, (weight, bias), "classification", 3, None, "pooler")
    enc = lm.tokenizer(
        ["a short one", "a somewhat longer sentence with more words in it", "mid length here"],
        padding=True,
        return_tensors="pt",
    )
    ids, types_, mask01 = enc["input_ids"], enc["token_type_ids"], enc["attention_mask"]
    cfg = build_configs(2, 4)
    with torch.inference_mode():
        got = forward_configs(tm, ids, types_, mask01, torch.from_numpy(cfg.masks), mode, share_prefix)
        assert got.shape == (len(cfg), 3, 3)
        for c in range(len(cfg)):
            if cfg.kind[c] == "head" or cfg.kind[c] == "base":
                ref = _hooked_logits(
                    eager, weight, bias, ids, types_, mask01, int(cfg.layer[c]), int(cfg.head[c]), mode
                )
                torch.testing.assert_close(got[c], ref, rtol=1e-4, atol=1e-4)
        # a whole layer switched off equals all its heads switched off in a user set
        sets = build_configs(2, 4, grid=False, head_sets=[[(1, h) for h in range(4)]])
        whole = forward_configs(tm, ids, types_, mask01, torch.from_numpy(sets.masks), mode, share_prefix)
        layer1 = [c for c in range(len(cfg)) if cfg.kind[c] == "layer" and cfg.layer[c] == 1][0]
        torch.testing.assert_close(whole[1], got[layer1], rtol=1e-5, atol=1e-5)


def test_padding_does_not_change_ablated_output():
    lm = load_model("random-bert-tiny", seed=1, attn_implementation=ATTN_ABLATE)
    gen = torch.Generator().manual_seed(0)
    tm = TaskModel(
        lm, (torch.randn(2, 64, generator=gen), torch.zeros(2)), "classification", 2, None, "pooler"
    )
    texts = ["tiny", "this one is a good deal longer than the first"]
    masks = torch.from_numpy(build_configs(2, 4).masks)
    with torch.inference_mode():
        batch = lm.tokenizer(texts, padding=True, return_tensors="pt")
        alone = lm.tokenizer(texts[:1], return_tensors="pt")
        for mode in ("uniform", "zero"):
            both = forward_configs(
                tm, batch["input_ids"], batch["token_type_ids"], batch["attention_mask"], masks, mode
            )
            one = forward_configs(
                tm, alone["input_ids"], alone["token_type_ids"], alone["attention_mask"], masks, mode
            )
            torch.testing.assert_close(both[:, :1], one, rtol=1e-4, atol=1e-5)
