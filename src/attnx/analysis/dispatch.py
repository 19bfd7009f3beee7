"""The one entry point of an analysis run, ``attnx analyze`` and the Python API alike: the run's rules
(:func:`~attnx.analysis.driver.plan_analysis`), then the streaming pass in this process
(:func:`~attnx.analysis.driver.stream_partial`) or on a Dask cluster (:mod:`attnx.scaleout.analyze`, which
runs the same pass on its workers). It sits above both so that neither imports the other's caller.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from attnx.analysis.driver import AnalyzeParams, as_store, open_labels, plan_analysis, stream_partial
from attnx.analysis.partial import Partial
from attnx.errors import AttnxError
from attnx.store import AttentionStore


def analyze_store(
    store: AttentionStore | str | Path,
    params: AnalyzeParams | None = None,
    labels_path: str | Path | None = None,
    progress: Callable[[int, int], None] | None = None,
    records: np.ndarray | None = None,
    js_keep: np.ndarray | None = None,
    workers: int | str | None = None,
    scheduler: str | None = None,
    threads_per_worker: int = 0,
    announce: Callable[[str], None] | None = None,
) -> Partial:
    """Run the requested analyses over ``store`` (or a ``--sample``), streaming; returns the merged partial.

    The rules are those of ``attnx analyze`` (:func:`plan_analysis`): errors raise :class:`AttnxError`,
    warnings are :class:`~attnx.errors.AttnxWarning` (``warnings.warn``).

    ``records``: input-order ids to analyse instead (e.g. one shard per process or machine; merge the
    returned partials with :meth:`Partial.merge`). Overrides ``params.sample``. Such a split run passes the
    whole run's ``js_keep`` (:func:`js_subset`).

    ``labels_path``: where to write per-record pattern codes (``(N, L, H)`` int8 ``.npy``, -1 = not analysed;
    N = input records) when ``params.per_record``; the probability of each label goes beside it to
    ``pattern_probs.npy`` (``(N, L, H)`` float16, NaN = not analysed). ``progress(records, bytes)`` is called
    after each block (a distributed run: after each task).

    ``workers`` (a number, or ``"gpus"``) or ``scheduler`` (an address) run the pass on a Dask cluster
    (:mod:`attnx.scaleout.analyze`; ``threads_per_worker`` kernel threads each, 0: cores / workers); the
    partial is that of one process. ``announce(line)`` gets the cluster's lines (its dashboard); default: none.
    """
    from attnx.scaleout.dask_cluster import cluster_spec  # no Dask import until a cluster is asked for

    spec = cluster_spec(workers, scheduler, threads_per_worker)  # a bad --workers fails before the store opens
    store = as_store(store)
    plan = plan_analysis(store, params or AnalyzeParams(), records, js_keep)
    if plan.params.per_record:
        if labels_path is None:
            raise AttnxError("per-record labels need an output path")
        labels, probs = open_labels(labels_path, len(store.position), store.n_layers, store.n_heads, create=True)
        labels.flush()
        probs.flush()
        del labels, probs
    if spec is None:
        return stream_partial(store, plan, labels_path, progress)
    from attnx.scaleout.analyze import analyze_distributed

    return analyze_distributed(store, plan, labels_path, progress, spec, announce)
