"""Examples of a labelled data set as model input: tokenised once, padded per chunk, chunked by length within
the token budget, with an optional progress callback per chunk."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

import numpy as np
import torch

from attnx.ablation.data import LabelledData
from attnx.ablation.task_model import TaskModel
from attnx.config import load_config


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


def pad(enc: Encoded, index: np.ndarray, device: torch.device) -> tuple[torch.Tensor, ...]:
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


def chunks(enc: Encoded, subset: np.ndarray, rows_per_example: int, device: torch.device) -> Iterator[np.ndarray]:
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
