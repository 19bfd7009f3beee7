"""Batched head and layer ablation: every configuration of a batch in one pass over the data.

For a chunk of B examples and C ablation configurations (a bool mask ``(C, layers, heads)``), the
encoder runs layer by layer over up to ``B * C`` rows, each row carrying its configuration's head mask
(see :mod:`attnx.ablation.masking`). Configurations share their common prefix: layers below the first
layer a configuration ablates compute exactly what the unablated model computes, so they are run once
(the "trunk", B rows) and a configuration's rows branch off the trunk at its first ablated layer.
For single heads that halves the work of C independent passes; for C passes it also amortises
tokenisation, padding and per-call overhead.

Kept in one file (about 470 lines): the layer-by-layer pass, the trunk/branch scheduling and the chunked
evaluation depend on each other's tensor layouts.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

import numpy as np
import torch

from attnx.ablation.data import LabelledData, Targets, parse_labels, split_indices
from attnx.ablation.masking import ATTN_ABLATE, MODES, AblationState, ablating
from attnx.ablation.probe import LinearProbe, fit_logistic, fit_ridge
from attnx.config import load_config
from attnx.engine.device import resolve_device as engine_device
from attnx.engine.model import LoadedModel, load_model, resolve_model_dir
from attnx.errors import AttnxError, InputError, ModelError

POOLINGS = ("mean", "cls", "pooler")


# ---------------------------------------------------------------------------------------------- configs
@dataclass(frozen=True)
class AblationConfigs:
    """C ablation configurations. ``masks``: bool ``(C, layers, heads)``, True = head switched off.

    ``kind[c]``: ``base`` (nothing off), ``head``, ``layer`` or ``set``; ``layer[c]``/``head[c]``: the
    ablated layer/head (-1 where not applicable); ``label[c]``: e.g. ``L3H7``, ``L3``, ``3:7,5:1``.
    """

    masks: np.ndarray
    kind: list[str]
    layer: np.ndarray  # int64 (C,)
    head: np.ndarray  # int64 (C,)
    label: list[str]

    def __len__(self) -> int:
        return self.masks.shape[0]


def parse_head_set(text: str, layers: int, heads: int) -> list[tuple[int, int]]:
    """``"3:7,5:1"`` -> ``[(3, 7), (5, 1)]`` (0-based layer:head), checked against the model's shape."""
    out: list[tuple[int, int]] = []
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        try:
            layer_s, head_s = part.split(":")
            layer, head = int(layer_s), int(head_s)
        except ValueError:
            raise AttnxError(f"--heads {text!r}: expected layer:head pairs like 3:7,5:1") from None
        if not (0 <= layer < layers and 0 <= head < heads):
            raise AttnxError(f"--heads {text!r}: {layer}:{head} outside the model's {layers} x {heads} heads")
        out.append((layer, head))
    if not out:
        raise AttnxError(f"--heads {text!r}: no heads given")
    return out


def build_configs(
    layers: int, heads: int, grid: bool = True, head_sets: list[list[tuple[int, int]]] | None = None
) -> AblationConfigs:
    """Config 0 = unablated; then (with ``grid``) every single head (layer-major) and every whole layer;
    then each user head set."""
    masks = [np.zeros((layers, heads), bool)]
    kind, lay, hd, label = ["base"], [-1], [-1], ["base"]
    if grid:
        for layer in range(layers):
            for head in range(heads):
                m = np.zeros((layers, heads), bool)
                m[layer, head] = True
                masks.append(m)
                kind.append("head")
                lay.append(layer)
                hd.append(head)
                label.append(f"L{layer}H{head}")
        for layer in range(layers):
            m = np.zeros((layers, heads), bool)
            m[layer] = True
            masks.append(m)
            kind.append("layer")
            lay.append(layer)
            hd.append(-1)
            label.append(f"L{layer}")
    for head_set in head_sets or []:
        m = np.zeros((layers, heads), bool)
        for layer, head in head_set:
            m[layer, head] = True
        masks.append(m)
        kind.append("set")
        lay.append(-1)
        hd.append(-1)
        label.append(",".join(f"{a}:{b}" for a, b in head_set))
    return AblationConfigs(np.stack(masks), kind, np.asarray(lay, np.int64), np.asarray(hd, np.int64), label)


# ------------------------------------------------------------------------------------------ task model
@dataclass
class TaskModel:
    """An encoder loaded with the ablation attention function, plus what turns its output into logits.

    ``classifier``: ``(weight (k, hidden), bias (k,))`` of a BertForSequenceClassification head applied
    to the pooler output, or None when a ``probe`` on pooled features is used instead.
    """

    lm: LoadedModel
    classifier: tuple[torch.Tensor, torch.Tensor] | None
    task: str  # "classification" | "regression"
    num_labels: int
    label2id: dict[str, int] | None
    pooling: str = "mean"
    probe: LinearProbe | None = None
    max_length: int = 128

    def features(self, hidden: torch.Tensor, mask01: torch.Tensor) -> torch.Tensor:
        """Pooled features float32 ``(rows, hidden)``.

        ``hidden`` ``(rows, T, hidden)``, ``mask01`` ``(rows, T)`` (1 = real token).
        """
        if self.classifier is not None or self.pooling == "pooler":
            pooler = self.lm.model.pooler
            if pooler is None:
                raise ModelError(f"{self.lm.name}: model has no pooler layer (use --pool mean or cls)")
            return pooler(hidden).float()
        if self.pooling == "cls":
            return hidden[:, 0].float()
        m = mask01.to(hidden.dtype)[:, :, None]  # (rows, T, 1)
        return ((hidden * m).sum(1) / m.sum(1).clamp_min(1)).float()

    def logits(self, hidden: torch.Tensor, mask01: torch.Tensor) -> torch.Tensor:
        """Logits ``(rows, k)`` float32 (regression: ``(rows, 1)`` values)."""
        feats = self.features(hidden, mask01)
        if self.classifier is not None:
            weight, bias = self.classifier
            return feats @ weight.to(feats.device).T + bias.to(feats.device)
        if self.probe is None:
            raise AttnxError("the probe is not fitted yet")
        return self.probe(feats)


def _read_classifier(model_dir: str) -> tuple[torch.Tensor, torch.Tensor] | None:
    from pathlib import Path

    from safetensors import safe_open

    for file in sorted(Path(model_dir).glob("*.safetensors")):
        with safe_open(str(file), framework="pt") as fh:
            keys = set(fh.keys())
            for prefix in ("classifier.", "bert.classifier."):
                if prefix + "weight" in keys and prefix + "bias" in keys:
                    return fh.get_tensor(prefix + "weight").float(), fh.get_tensor(prefix + "bias").float()
    return None


def load_task_model(
    name: str,
    probe: str | None = None,
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
    pooling: str = "mean",
    seed: int = 0,
    max_length: int = 128,
) -> TaskModel:
    """Load ``name`` with the ablation attention function and its task head.

    Without ``probe`` the directory must hold a BertForSequenceClassification checkpoint
    (``classifier.weight``/``classifier.bias``); ``probe="logistic"`` fits a probe later
    (:func:`fit_probe`) on the unablated encoder's pooled output.
    """
    if probe not in (None, "logistic"):
        raise AttnxError(f"--probe {probe!r}: only 'logistic' is supported")
    if pooling not in POOLINGS:
        raise AttnxError(f"--pool {pooling!r}: use one of {', '.join(POOLINGS)}")
    lm = load_model(name, device=device, dtype=dtype, seed=seed, attn_implementation=ATTN_ABLATE)
    for p in lm.model.parameters():
        p.requires_grad_(False)
    if probe is not None:
        return TaskModel(lm, None, "auto", 0, None, pooling, None, max_length)
    head = None
    if lm.path:
        head = _read_classifier(str(resolve_model_dir(name)))
    if head is None:
        raise ModelError(
            f"{name}: no classification head (classifier.weight) in the weights; "
            "give a fine-tuned BertForSequenceClassification directory or use --probe logistic"
        )
    config = lm.model.config
    num_labels = int(head[0].shape[0])
    problem = getattr(config, "problem_type", None)
    task = "regression" if num_labels == 1 or problem == "regression" else "classification"
    label2id = {str(k): int(v) for k, v in (getattr(config, "label2id", None) or {}).items()}
    return TaskModel(lm, head, task, num_labels, label2id, "pooler", None, max_length)


# ------------------------------------------------------------------------------------------- batching
@dataclass(frozen=True)
class Encoded:
    """Tokenised examples (unpadded): ``ids[i]``/``types[i]`` int lists; ``order``: sorted by length."""

    ids: list[list[int]]
    types: list[list[int]]
    order: np.ndarray  # int64 (n,)


def encode(tm: TaskModel, data: LabelledData) -> Encoded:
    tok = tm.lm.tokenizer
    if data.text_b is None:
        enc = tok(data.text_a, truncation=True, max_length=tm.max_length)
    else:
        enc = tok(data.text_a, data.text_b, truncation=True, max_length=tm.max_length)
    ids = enc["input_ids"]
    types = enc.get("token_type_ids") or [[0] * len(x) for x in ids]
    lengths = np.asarray([len(x) for x in ids])
    return Encoded(ids, types, np.argsort(lengths, kind="stable").astype(np.int64))


def _pad(enc: Encoded, index: np.ndarray, device: torch.device) -> tuple[torch.Tensor, ...]:
    """(input_ids, token_type_ids, mask01), each int64 ``(len(index), T_max)``."""
    t = max(len(enc.ids[i]) for i in index)
    ids = np.zeros((len(index), t), np.int64)
    types = np.zeros_like(ids)
    mask = np.zeros_like(ids)
    for r, i in enumerate(index):
        n = len(enc.ids[i])
        ids[r, :n] = enc.ids[i]
        types[r, :n] = enc.types[i]
        mask[r, :n] = 1
    return tuple(torch.from_numpy(a).to(device) for a in (ids, types, mask))


_chunk_done: ContextVar[Callable[[int], None] | None] = ContextVar("attnx_ablation_progress", default=None)


@contextmanager
def reporting(callback: Callable[[int], None]) -> Iterator[None]:
    """Within the block, ``callback(rows)`` runs after each chunk of every pass over the data has been
    processed, with its ``examples * rows_per_example`` (example x configuration forward rows): progress."""
    token = _chunk_done.set(callback)
    try:
        yield
    finally:
        _chunk_done.reset(token)


def chunks(
    enc: Encoded, subset: np.ndarray, rows_per_example: int, device: torch.device
) -> Iterator[np.ndarray]:
    """Length-sorted chunks of ``subset``: ``examples * rows_per_example * T`` within the token budget."""
    cfg = load_config()
    max_tokens = cfg.cuda_max_batch_tokens if device.type == "cuda" else cfg.cpu_max_batch_tokens
    pos = {int(i): k for k, i in enumerate(enc.order)}
    ordered = np.asarray(sorted((int(i) for i in subset), key=lambda i: pos[i]), np.int64)
    start = 0
    while start < len(ordered):
        end = start + 1
        while end < len(ordered):
            t = len(enc.ids[ordered[end]])  # sorted: the last one is the longest
            if (end + 1 - start) * rows_per_example * t > max_tokens:
                break
            end += 1
        yield ordered[start:end]
        done = _chunk_done.get()
        if done is not None:
            done((end - start) * rows_per_example)
        start = end


# -------------------------------------------------------------------------------------------- forward
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
    per_cfg = [
        trunk if c not in slot else hidden[slot[c] * batch : (slot[c] + 1) * batch] for c in range(n_cfg)
    ]
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
            ids, types, mask01 = _pad(enc, index, device)
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
        ids, types, mask01 = _pad(enc, index, device)
        with ablating(AblationState("zero")):
            hidden = tm.lm.model(input_ids=ids, token_type_ids=types, attention_mask=mask01).last_hidden_state
        out[[where[int(i)] for i in index]] = tm.features(hidden, mask01).cpu().numpy()
    return out


def predictions(logits: np.ndarray, task: str) -> np.ndarray:
    """Class ids int64 or regression values float64, ``(..., n)`` from logits ``(..., n, k)``."""
    if task == "regression":
        return logits[..., 0].astype(np.float64)
    return logits.argmax(-1).astype(np.int64)


# -------------------------------------------------------------------------------------- preparation
@dataclass
class Prepared:
    """A task model ready to evaluate: targets of all examples, the evaluation subset and its encoding."""

    tm: TaskModel
    data: LabelledData
    targets: Targets
    enc: Encoded
    train: np.ndarray  # int64 indices into data (empty without a probe)
    eval: np.ndarray  # int64 indices into data
    seed: int


def prepare(
    tm: TaskModel,
    data: LabelledData,
    task: str = "auto",
    train_frac: float = 0.5,
    seed: int = 0,
    limit: int | None = None,
) -> Prepared:
    """Parse labels, split (probe only), and fit the probe on the unablated encoder's training features.

    ``limit``: keep a seeded random sample of at most this many examples first.
    """
    if limit is not None and limit < len(data):
        keep = np.sort(np.random.default_rng(seed).permutation(len(data))[:limit])
        data = data.subset(keep)
    if tm.classifier is not None:
        targets = parse_labels(data, task if task != "auto" else tm.task, tm.label2id, tm.num_labels)
        if targets.task != tm.task:
            raise InputError(
                data.path, None, f"the model's head is for {tm.task}, the task is {targets.task}"
            )
        enc = encode(tm, data)
        return Prepared(
            tm, data, targets, enc, np.zeros(0, np.int64), np.arange(len(data), dtype=np.int64), seed
        )
    targets = parse_labels(data, task)
    train, held = split_indices(len(data), train_frac, seed, data.path)
    if targets.task == "classification" and len(np.unique(targets.y[train])) < 2:
        raise InputError(data.path, None, "the probe's training split holds a single class; use more data")
    enc = encode(tm, data)
    feats = pooled_features(tm, enc, train)
    if targets.task == "classification":
        tm.probe = fit_logistic(feats, targets.y[train], len(targets.classes), seed=seed)
    else:
        tm.probe = fit_ridge(feats, targets.y[train])
    tm.task = targets.task
    tm.num_labels = max(1, len(targets.classes))
    return Prepared(tm, data, targets, enc, train, held, seed)


def n_heads_shape(tm: TaskModel) -> tuple[int, int]:
    return len(tm.lm.model.encoder.layer), tm.lm.num_heads


def resolve_device(device: str | None) -> tuple[str, torch.dtype]:
    """The device of :func:`attnx.engine.device.resolve_device` (the one ``--device`` rule) and the model dtype
    on it: float16 on CUDA, else float32."""
    dev = engine_device(device)
    return str(dev), torch.float16 if dev.type == "cuda" else torch.float32


def rounds(x: float) -> float:
    return float(round(x, 6)) if math.isfinite(x) else float("nan")
