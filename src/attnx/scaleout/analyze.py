"""``attnx analyze`` on a Dask cluster: contiguous runs of stored records to workers, partials merged.

The coordinator pins one snapshot, draws the sample and the JS subset once for the whole store (as one
process would), cuts the records into runs of about ``task_bytes`` of stored attention in physical order (so
each task reads whole chunks), and adds the partial sums the workers return: the tables are those of one
process. Per-record label files are created by the coordinator and filled in place by the workers (a
shared filesystem, as for the store).
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

from attnx.analysis.driver import AnalysisPlan, stream_partial
from attnx.analysis.partial import Partial
from attnx.scaleout.dask_cluster import ClusterSpec
from attnx.store import AttentionStore

_STORES: dict[tuple[str, str], AttentionStore] = {}
_LOCK = threading.Lock()


def _open(path: str, snapshot: str) -> AttentionStore:
    """The store at ``snapshot``, opened (and validated) once per worker process."""
    with _LOCK:
        key = (path, snapshot)
        if key not in _STORES:
            _STORES.clear()
            _STORES[key] = AttentionStore(path, snapshot)
        return _STORES[key]


def _analyze_part(
    path: str, snapshot: str, plan: AnalysisPlan, records: np.ndarray, labels_path: str | None, threads: int
) -> Partial:
    """One task: the plan's pass over ``records`` (a run contiguous in physical order)."""
    import numba

    if threads:
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))  # restored by stream_partial
    return stream_partial(_open(path, snapshot), dataclasses.replace(plan, records=records), labels_path)


def record_runs(store: AttentionStore, records: np.ndarray | None, task_bytes: int) -> list[np.ndarray]:
    """Input ids cut into runs that are contiguous in physical order, about ``task_bytes`` of payload each."""
    ids, sizes = store.physical_ids, store.physical_payload_nbytes
    if records is not None:
        keep = np.zeros(len(store.position), bool)
        keep[records] = True
        chosen = keep[ids]
        ids, sizes = ids[chosen], sizes[chosen]
    if not len(ids):
        return []
    cut = np.searchsorted(np.cumsum(sizes), np.arange(task_bytes, int(sizes.sum()), task_bytes), side="right")
    return [np.sort(part) for part in np.split(ids, np.unique(cut)) if len(part)]


def analyze_on_cluster(
    store: AttentionStore,
    plan: AnalysisPlan,
    client: object,
    labels_path: str | Path | None = None,
    progress: Callable[[int, int], None] | None = None,
    threads: int = 0,
    task_bytes: int = 256 << 20,
) -> Partial:
    """:func:`~attnx.analysis.driver.stream_partial` of ``plan`` (made by
    :func:`~attnx.analysis.driver.plan_analysis`, label files already created) on the workers of ``client``;
    returns the merged partial."""
    from distributed import as_completed

    runs = record_runs(store, plan.records, task_bytes)
    js_keep = plan.js_keep
    if js_keep is None and "js" in plan.metrics:
        js_keep = np.ones(len(store.position), bool)  # every planned record, not every record of a task's run
    shared = client.scatter(dataclasses.replace(plan, records=None, js_keep=js_keep), broadcast=True)
    futures = [
        client.submit(
            _analyze_part,
            store.path,
            store.snapshot_id,
            shared,
            run,
            str(labels_path) if labels_path else None,
            threads,
            pure=False,
        )
        for run in runs
    ]
    total = Partial(store.n_layers, store.n_heads)
    for fut in as_completed(futures):
        part = fut.result()
        total = total.merge(part)
        if progress is not None:
            progress(part.records, part.attn_bytes)
    return total


def analyze_distributed(
    store: AttentionStore,
    plan: AnalysisPlan,
    labels_path: str | Path | None,
    progress: Callable[[int, int], None] | None,
    spec: ClusterSpec,
    announce: Callable[[str], None] | None = None,
) -> Partial:
    """Start (or connect to) the cluster ``spec`` names and run :func:`analyze_on_cluster`."""
    from attnx.scaleout.dask_cluster import connect

    with connect(spec, announce or (lambda line: None)) as client:
        return analyze_on_cluster(store, plan, client, labels_path, progress, threads=spec.torch_threads())
