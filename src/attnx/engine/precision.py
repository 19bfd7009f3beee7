"""Measure how far reduced-precision compute (bf16 on CPU, fp16 on CUDA) moves the attention maps.

The reference is float32 compute through the same capture path (which equals transformers' eager
attention within 1e-5, see tests/test_parity.py); the candidate is the same model loaded in
``compute_dtype``. Both run the same length-sorted padded batches, stored as float32, so the comparison is
element by element over every kept ``(layers, heads, l, l)`` map. ``extract`` can record the result in a
store's attributes (``PrecisionReport.to_attrs``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from attnx.engine.backends.base import PackedBatch, TokenBatch, collate
from attnx.engine.model import LoadedModel, load_model
from attnx.errors import AttnxError

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample.txt"


class PrecisionError(AttnxError):
    """The precision measurement cannot run (bad dtype, no texts, device unavailable)."""


@dataclass(frozen=True)
class PrecisionReport:
    """Error of ``compute_dtype`` attention against float32, over ``records`` records."""

    model: str
    compute_dtype: str
    device: str
    reference: str  # e.g. "float32 capture (= eager) on cpu"
    records: int
    elements: int  # attention probabilities compared
    max_abs_error: float  # max over all elements of |p_dtype - p_fp32|
    mean_abs_error: float
    p999_abs_error: float  # 99.9th percentile of |p_dtype - p_fp32|
    max_row_sum_error: float  # max |sum_k p_dtype[q, k] - 1| over real query rows
    seconds: float

    def to_attrs(self) -> dict:
        """JSON-safe dict for ``store.attrs["precision"]["measured"]``."""
        return {k: (round(v, 8) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def _encode(tokenizer: object, texts: Sequence[str | tuple[str, str]], max_length: int) -> list[list[int]]:
    out = []
    for t in texts:
        a, b = (t, None) if isinstance(t, str) else t
        enc = tokenizer(a, b, truncation=True, max_length=max_length)
        out.append((enc["input_ids"], enc.get("token_type_ids") or [0] * len(enc["input_ids"])))
    return out


def _batches(encoded: list, batch_size: int, pad_id: int) -> list[TokenBatch]:
    """Length-sorted padded batches of ``batch_size`` records (the same for both dtypes)."""
    order = np.argsort([len(ids) for ids, _ in encoded], kind="stable")
    ids = np.concatenate([np.asarray(encoded[i][0], np.int32) for i in order])
    seg = np.concatenate([np.asarray(encoded[i][1], np.int8) for i in order])
    offsets = np.concatenate([[0], np.cumsum([len(encoded[i][0]) for i in order])]).astype(np.int64)
    n = len(order)
    return [
        collate(ids, offsets, seg, np.arange(lo, min(lo + batch_size, n)), pad_id) for lo in range(0, n, batch_size)
    ]


def run_packed(loaded: LoadedModel, batches: list[TokenBatch]) -> list[PackedBatch]:
    """Every layer and head of ``batches`` as float32 packed maps (record b: ``(layers, heads, l_b, l_b)``)."""
    from attnx.engine.backends.torch_backend import TorchBackend

    backend = TorchBackend(
        loaded, list(range(loaded.layers_run)), list(range(loaded.num_heads)), "float32"
    )
    out = [backend.submit(b).result() for b in batches]
    backend.close()
    return out


def measure_precision(
    model: str,
    compute_dtype: str = "bfloat16",
    texts: Sequence[str | tuple[str, str]] | None = None,
    device: str = "cpu",
    reference_device: str = "cpu",
    limit: int = 100,
    batch_size: int = 16,
    max_length: int = 128,
    seed: int = 0,
) -> PrecisionReport:
    """Compare ``model``'s attention computed in ``compute_dtype`` on ``device`` with float32 compute.

    ``texts``: sentences or (a, b) pairs, the first ``limit`` used; default the packaged sample sentences.
    ``model``: anything ``load_model`` takes (``random-bert-*`` uses ``seed`` for both loads).
    Returns a :class:`PrecisionReport`; the maps are ``(layers, heads, q, k)`` per record.
    """
    if compute_dtype not in DTYPES:
        raise PrecisionError(f"compute dtype {compute_dtype!r}: choose float32, float16 or bfloat16")
    if texts is None:
        texts = [s for s in SAMPLE.read_text(encoding="utf-8").splitlines() if s.strip()]
    texts = list(texts)[:limit]
    if not texts:
        raise PrecisionError("measure_precision: no texts to measure on")
    t0 = time.perf_counter()
    ref = load_model(model, device=reference_device, dtype=torch.float32, seed=seed)
    pad = ref.tokenizer.pad_token_id or 0
    batches = _batches(_encode(ref.tokenizer, texts, max_length), batch_size, pad)
    want = run_packed(ref, batches)
    del ref
    cand = load_model(model, device=device, dtype=DTYPES[compute_dtype], seed=seed)
    got = run_packed(cand, batches)
    n_lh = cand.layers_run * cand.num_heads
    worst, total, count, row_worst = 0.0, 0.0, 0, 0.0
    errors = []
    for g, w in zip(got, want, strict=True):
        diff = np.abs(g.attn.astype(np.float64) - w.attn)
        worst = max(worst, float(diff.max()))
        total += float(diff.sum())
        count += diff.size
        errors.append(diff.astype(np.float32))
        start = 0
        for length in g.lengths.tolist():  # row sums of the candidate's real query rows
            block = g.attn[start : start + n_lh * length * length].reshape(n_lh, length, length)
            row_worst = max(row_worst, float(np.abs(block.sum(-1, dtype=np.float64) - 1.0).max()))
            start += block.size
    p999 = float(np.quantile(np.concatenate(errors), 0.999))
    return PrecisionReport(
        model=model,
        compute_dtype=compute_dtype,
        device=str(cand.device),
        reference=f"float32 capture (= eager) on {reference_device}",
        records=len(texts),
        elements=count,
        max_abs_error=worst,
        mean_abs_error=total / count,
        p999_abs_error=p999,
        max_row_sum_error=row_worst,
        seconds=time.perf_counter() - t0,
    )
