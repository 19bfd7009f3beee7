"""Connecting to the Dask cluster a run uses: local worker processes, one per GPU, or an existing scheduler."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from attnx.errors import AttnxError


@dataclass(frozen=True)
class ClusterSpec:
    """``workers``: a number of local worker processes, or ``"gpus"`` (one per visible GPU); ``scheduler``:
    the address of a running scheduler instead. ``threads_per_worker``: torch threads in each local worker
    (default: cores / workers). ``retries``: times a task may lose its worker before the run fails."""

    workers: int | str | None = None
    scheduler: str | None = None
    threads_per_worker: int = 0
    retries: int = 3

    @classmethod
    def from_options(
        cls, workers: int | str | None, scheduler: str | None, threads_per_worker: int = 0, retries: int = 3
    ) -> ClusterSpec:
        """The spec of ``--workers``/``--scheduler`` (and ``attnx.extract(workers=...)``), checked."""
        if workers is not None and scheduler is not None:
            raise AttnxError("give --workers or --scheduler, not both")
        return cls(parse_workers(None if workers is None else str(workers)), scheduler, threads_per_worker, retries)

    @property
    def enabled(self) -> bool:
        return self.workers is not None or self.scheduler is not None

    def torch_threads(self) -> int:
        if self.scheduler or self.workers == "gpus":
            return self.threads_per_worker
        return self.threads_per_worker or max(1, (os.cpu_count() or 1) // int(self.workers or 1))


def cluster_spec(
    workers: int | str | None, scheduler: str | None, threads_per_worker: int = 0, retries: int = 3
) -> ClusterSpec | None:
    """Where a run goes, the one dispatch of ``--workers``/``--scheduler`` (CLI and Python API alike): a checked
    :class:`ClusterSpec` when either is given, None when the run stays in this process."""
    if workers is None and scheduler is None:
        return None
    return ClusterSpec.from_options(workers, scheduler, threads_per_worker, retries)


def parse_workers(value: str | None) -> int | str | None:
    """``--workers``: a positive number or ``gpus``."""
    if value is None:
        return None
    if value == "gpus":
        return value
    try:
        n = int(value)
    except ValueError:
        raise AttnxError(f"--workers {value!r}: give a number of worker processes or 'gpus'") from None
    if n < 1:
        raise AttnxError(f"--workers {value!r}: needs at least 1")
    return n


@contextmanager
def connect(spec: ClusterSpec, announce=print) -> Iterator[object]:  # noqa: ANN001
    """A ``distributed.Client`` for the run, closed (with any cluster started here) on exit."""
    try:
        import dask
        from distributed import Client
    except ImportError:
        raise AttnxError("--workers/--scheduler need Dask: pip install 'attnx[dask]'") from None
    environ = dict(dask.config.get("distributed.nanny.pre-spawn-environ", {}))
    # Dask sets MALLOC_TRIM_THRESHOLD_=65536 in worker processes; with the engine's large short-lived buffers
    # that halves extraction speed (measured: 33.5 -> 18.3 sent/s on one process), so glibc keeps its default
    environ.pop("MALLOC_TRIM_THRESHOLD_", None)
    settings = {"distributed.scheduler.allowed-failures": spec.retries, "distributed.nanny.pre-spawn-environ": environ}
    with dask.config.set(settings):
        if spec.scheduler:
            try:
                client = Client(spec.scheduler, timeout="30s")
            except OSError as exc:
                raise AttnxError(f"--scheduler {spec.scheduler}: cannot connect ({exc})") from None
            cluster = None
        else:
            cluster = _local_cluster(spec)
            client = Client(cluster)
        try:
            link = getattr(client, "dashboard_link", None)
            workers = len(client.scheduler_info()["workers"])
            announce(f"attnx: Dask cluster with {workers} workers" + (f", dashboard {link}" if link else ""))
            yield client
        finally:
            client.close()
            if cluster is not None:
                cluster.close()


def _local_cluster(spec: ClusterSpec):  # noqa: ANN202
    from distributed import LocalCluster

    # one Dask thread per worker: a worker runs one shard at a time, with torch's own threads inside it
    common = {"threads_per_worker": 1, "dashboard_address": ":0", "silence_logs": 40}
    if spec.workers == "gpus":
        try:
            from dask_cuda import LocalCUDACluster
        except ImportError:
            import torch

            n = torch.cuda.device_count()
            if n == 0:
                raise AttnxError("--workers gpus: no CUDA device is visible") from None
            return LocalCluster(n_workers=n, processes=True, **common)  # worker k takes GPU k (scaleout.worker)
        return LocalCUDACluster(**common)
    return LocalCluster(n_workers=int(spec.workers), processes=True, **common)
