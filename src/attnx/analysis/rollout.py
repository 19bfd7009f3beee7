"""Attention rollout of a whole store, written back into it (``derived/rollout``), and read back.

The kernel (:func:`attnx.kernels.rollout.rollout_flat`) takes arrays; this module streams the store's blocks
through it and owns the store I/O.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from attnx.analysis.driver import require_maps
from attnx.config import BLOCK_BYTES
from attnx.kernels.rollout import rollout_flat
from attnx.store import open_store
from attnx.threads import keeps_thread_settings


@keeps_thread_settings
def store_rollout(
    store_path: str | Path, max_bytes: int = BLOCK_BYTES, progress: Callable[[int], None] | None = None
) -> dict:
    """Rollout of every record of a complete store, written back into it as ``derived/rollout`` (float32,
    one ``(l, l)`` matrix per record; see :meth:`attnx.store.AttentionStore.derived`). Streams blocks, so
    memory stays bounded by the block size. ``progress(records_done)`` after each block; ``seconds`` in
    the returned summary covers the blocks and the final write.
    """
    t0 = time.perf_counter()
    store = open_store(store_path)
    require_maps(store, "rollout")
    writer = store.derived_writer("rollout", "float32", shape="l,l")
    done = 0
    try:
        for block in store.blocks(max_bytes=max_bytes):
            vals, _ = rollout_flat(
                block.attn, block.attn_offsets, block.lengths, store.n_layers, store.n_heads, block.scale
            )
            writer.append(vals, block.lengths.astype(np.int64) ** 2)
            done += len(block)
            if progress is not None:
                progress(done)
    except BaseException:
        writer.close()  # nothing committed; the store is as it was and its lock is free
        raise
    writer.finish(
        {
            "definition": "Abnar & Zuidema 2020: heads averaged, 0.5*A + 0.5*I, product over the stored layers",
            "layers": store.layers,
        }
    )
    return {
        "records": done,
        "output": f"{store_path}/derived/rollout",
        "layers": store.n_layers,
        "seconds": time.perf_counter() - t0,
    }


def load_rollout(store_path: str | Path, i: int) -> np.ndarray:
    """Rollout of input record ``i`` stored by :func:`store_rollout`, float32 ``(l, l)``."""
    return open_store(store_path).derived("rollout", i)
