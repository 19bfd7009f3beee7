"""Tunables in one place, each overridable by an ``ATTNX_<NAME>`` environment variable.

Units are in the names: ``*_bytes`` are bytes, ``*_records`` are input records (sentences or pairs).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

from attnx.errors import AttnxError
from attnx.threads import default_io_threads

# stored attention per block a reader streams (analysis, compare, rollout, verify): what bounds their memory;
# `--block-mb` defaults to it. A constant, not a Config field: it is every reading function's default argument.
BLOCK_BYTES = 64 << 20


@dataclass(frozen=True)
class Config:
    # records read, tokenized and length-sorted together; also the resume granularity
    window_records: int = 4096
    # budget on the fp32 attention a batch produces: batch x layers x heads x L_pad^2 x 4
    cpu_attn_budget_bytes: int = 96 << 20
    # extra CPU cap on padded tokens per batch (activations, not attention, bound the CPU there). 1,024 ran
    # 1.10-1.31x the former 8,192 (MiniLM on 4,541 and 20,000 sentences, BERT-base on 1,000; 2-core EPYC, backend
    # auto: benchmarks/results/batch_tokens*.json): smaller batches stay in cache, and a short run is not a few
    # huge batches that the writer cannot overlap; 512 was slower again
    cpu_max_batch_tokens: int = 1024
    # CUDA: fraction of free device memory the attention budget may use
    cuda_budget_fraction: float = 0.25
    cuda_max_batch_tokens: int = 262144
    # elements of attention per stored chunk (float16: 8 MiB per chunk)
    attn_chunk_elems: int = 4 << 20
    # records per chunk of the per-record arrays, tokens per chunk of the per-token arrays
    record_chunk: int = 1 << 16
    token_chunk: int = 1 << 20
    # batches in flight between the model and the writer
    queue_depth: int = 3
    # windows tokenized ahead of the model
    tokenize_ahead: int = 2
    # torch intra-op threads on CPU (0: torch's default)
    cpu_threads: int = 0
    # compression level of an explicitly chosen --codec (0: that codec's usual level; auto picks its own)
    codec_level: int = 0
    # a writer commits (one Icechunk snapshot, visible to readers, the resume point) after this many bytes of
    # stored attention or this many seconds, whichever comes first, always on a batch boundary
    commit_bytes: int = 128 << 20
    commit_seconds: float = 10.0
    # whole attention chunks the writer hands zarr at once (compressed in parallel on zarr's thread pool)
    writer_flush_chunks: int = 2
    # threads that compress, checksum and store the writer's chunks, outside the GIL (0: every core but two,
    # 1..16; attnx.threads.default_io_threads); `--io-threads` where a command has it
    io_threads: int = 0
    # sentences of the bundled sample on which reduced-precision compute is compared with fp32 (0: skip)
    precision_check_records: int = 32
    # sample records on which --backend auto checks an ONNX export against torch before using it (cached per export)
    backend_parity_records: int = 24


# the range each tunable must lie in (inclusive; None: unbounded). window_records is also what bounds a reader's
# input-order arrays (attnx.store.layout.MAX_WINDOW_RECORDS, 2**22)
_RANGES: dict[str, tuple[float | None, float | None]] = {
    "window_records": (1, 1 << 22),
    "cpu_attn_budget_bytes": (1, None),
    "cpu_max_batch_tokens": (1, None),
    "cuda_budget_fraction": (1e-6, 1.0),
    "cuda_max_batch_tokens": (1, None),
    "attn_chunk_elems": (1, 1 << 31),
    "record_chunk": (1, 1 << 31),
    "token_chunk": (1, 1 << 31),
    "queue_depth": (1, 1024),
    "tokenize_ahead": (1, 1024),
    "cpu_threads": (0, 4096),
    "codec_level": (0, 22),
    "commit_bytes": (1, None),
    "commit_seconds": (1e-6, None),
    "writer_flush_chunks": (1, 1024),
    "precision_check_records": (0, None),
    "backend_parity_records": (0, None),
    "io_threads": (0, 256),
}


def _check_range(name: str, value: object, source: str) -> None:
    lo, hi = _RANGES.get(name, (None, None))
    if isinstance(value, int | float) and not (
        (lo is None or value >= lo) and (hi is None or value <= hi) and value == value  # noqa: PLR0124 - NaN
    ):
        span = f"{lo}..{hi}" if hi is not None else f">= {lo}"
        raise AttnxError(f"{source}: must be {span}")


def _coerce(value: str, kind: type) -> object:
    if kind is bool:
        return value.lower() in ("1", "true", "yes", "on")
    return kind(value)


def load_config(**overrides: object) -> Config:
    """The defaults, then ``ATTNX_*`` environment variables, then explicit ``overrides``."""
    values: dict[str, object] = {}
    for f in dataclasses.fields(Config):
        env = os.environ.get(f"ATTNX_{f.name.upper()}")
        if env is not None:
            kind = type(f.default)
            try:
                values[f.name] = _coerce(env, kind)
            except ValueError:
                raise AttnxError(f"ATTNX_{f.name.upper()}={env!r}: expected {kind.__name__}") from None
            _check_range(f.name, values[f.name], f"ATTNX_{f.name.upper()}={env!r}")
    values.update({k: v for k, v in overrides.items() if v is not None})
    for name, value in overrides.items():
        _check_range(name, value, f"{name}={value!r}")
    return Config(**values)


def io_threads(cfg: Config) -> int:
    """The writer's I/O threads: ``cfg.io_threads``, or what the machine can spare where it is 0."""
    return cfg.io_threads or default_io_threads()
