"""The coordinator of a distributed extraction: cut, count, place, dispatch, merge in order, commit.

1. The input is streamed once and cut into shards of whole windows (:func:`cut_shards`); at most
   ``lookahead`` shards are held (inside their Dask tasks) at any time, never the corpus.
2. A worker counts each shard's sizes (tokenization only); the coordinator gives shard k the region that
   follows shard k-1's in every array, so record i of the input lands where one process would put it.
3. Regions are reserved (arrays grown) and committed; each shard is then sent with a fork of the clean
   session that follows that commit (Icechunk's cooperative writes) and written by the worker.
4. Finished shards are merged in input order: the fork's chunks, plus the edge elements the coordinator
   writes itself (chunks shared by two shards). Commits (by bytes or time, and whenever new shards need
   forks) therefore only ever hold whole shards; a killed job resumes after the last merged shard.

A worker lost mid-shard has its task re-run by Dask on another worker with the same fork; what the lost
worker wrote is never referenced. Errors in a shard (bad input) stop the run after committing what was merged.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from attnx.config import Config, load_config
from attnx.engine.extract import load_checked
from attnx.engine.run import (
    ExtractOptions,
    RunDone,
    Summary,
    begin_store,
    compute_dtype,
    finish_run,
    open_run,
    run_backend,
)
from attnx.engine.sources import Source
from attnx.errors import AttnxError, InputError, StoreError
from attnx.scaleout.dask_cluster import ClusterSpec, connect
from attnx.scaleout.shards import (
    DEFAULT_SHARD_RECORDS,
    SHARDS_PER_WORKER,
    Shard,
    count_records,
    cut_shards,
    plan_shard_records,
)
from attnx.scaleout.worker import ShardJob, ShardResult, ShardSizes, run_shard, size_shard
from attnx.store.layout import Payload, small_arrays


@dataclass(frozen=True)
class ScaleOptions:
    """How a distributed run spreads its work (see ``attnx extract --help``)."""

    shard_records: int | None = None  # input records per shard, rounded up to whole windows (None: planned)
    lookahead: int = 0  # shards held at once (0: 3 per worker)
    torch_threads: int = 0  # torch (or onnxruntime) threads in each CPU worker process (0: leave as the worker has it)
    # resolve ``--backend auto`` here, as one process would: only for a cluster of CPU workers on this machine,
    # which share its onnxruntime and its ONNX export cache (elsewhere every worker runs UNRESOLVED_AUTO)
    resolve_auto: bool = False


@dataclass
class _Placed:
    shard: Shard
    sizes: ShardSizes
    start: dict[str, int]
    end: dict[str, int]
    epoch: int = -1  # the shape epoch its fork was made in


def _array_groups(attrs: dict) -> dict[str, str]:
    """array name -> which count it grows with: payload | rec | tok | words."""
    payload = Payload.from_attrs(attrs).array
    return {payload: "payload", **{n: n.split("/")[0] for n in small_arrays(bool(attrs.get("conllu")))}}


def extract_on_cluster(
    opts: ExtractOptions,
    client: object,
    scale: ScaleOptions | None = None,
    progress: Callable[[int, int, int], None] | None = None,
    config: Config | None = None,
) -> Summary:
    """``attnx extract`` on the workers of ``client`` (a ``distributed.Client``) into one store.

    The store is the same as a single process would write (record ``i`` is input record ``i``; every
    reader, ``verify`` and the xarray view see no difference). Resumes a store whose last commit ends on a
    shard boundary (any store this function wrote, or a single-process one stopped between windows of the
    right size); does nothing on a complete one.
    """
    from distributed import wait

    cfg = config or load_config()
    scale = scale or ScaleOptions()
    with open_run(opts) as run:
        opts = dataclasses.replace(opts, format=run.source.format)
        device = _workers_device(client, opts.device)
        compute = compute_dtype(opts, device == "cuda")
        nworkers = max(1, len(client.scheduler_info()["workers"]))
        # the coordinator needs the model's identity and vocabulary only: loaded on its CPU in float32
        meta_opts = dataclasses.replace(opts, device="cpu")
        loaded, layers, heads = load_checked(meta_opts, "cpu", "float32")
        local_cpu = scale.resolve_auto and device == "cpu"
        choice = run_backend(opts, loaded, layers, heads, run.existing, cfg, resolve_auto=local_cpu)
        opts = dataclasses.replace(opts, backend=choice.backend)  # what every worker runs and the store records
        requested = scale.shard_records or _planned_shard_records(opts, run.source.format, nworkers, cfg)
        window = min(cfg.window_records, requested)
        opened = begin_store(opts, cfg, run, loaded, layers, heads, compute, window)
        del loaded
        if isinstance(opened, Summary):
            return opened
        writer = opened
        window = int(writer.attrs["batching"]["window_records"])
        shard_records = -(-requested // window) * window
        resumed_from = writer.commit.records
        if resumed_from % shard_records and scale.shard_records is None and resumed_from % window == 0:
            # a planned size that does not divide what a resumed store holds (another --workers than the run
            # that started it): the largest whole-window size that divides both keeps every shard boundary
            shard_records = math.gcd(resumed_from, shard_records)
        if resumed_from % shard_records:
            raise StoreError(
                f"{writer.path}: holds {resumed_from} records, not a whole number of {shard_records}-record shards; "
                "finish it without --workers, or give a --shard-records that divides it"
            )
        job = ShardJob(opts, device, compute, window, cfg, _job_attrs(writer.attrs), threads=scale.torch_threads)
        groups = _array_groups(writer.attrs)
        t0 = time.perf_counter()
        if progress:
            progress(0, 0, 0)
        totals = _Run(client, job, writer, run.source, shard_records, groups, scale, nworkers, progress).run(wait)
        seconds = time.perf_counter() - t0

        def measure() -> dict:
            return client.submit(
                _measure_precision, opts.model, compute, device, cfg.precision_check_records, pure=False
            ).result()

        done = RunDone(
            totals["records"], totals["tokens"], totals["bytes"], totals["truncated"], totals["shards"], seconds
        )
        return finish_run(
            opts,
            cfg,
            run,
            writer,
            done,
            compute,
            resumed_from,
            f"{nworkers} x {device}",
            writer.attrs["options"]["backend"],  # what every worker ran, as the store records it
            measure,
            attrs_extra={"distributed": {"shard_records": shard_records, "workers": nworkers}},
            phases=totals["phases"],
        )


class _Run:
    """The coordinator's loop over one run: read -> place -> dispatch -> merge, then wait for workers.

    Shards move through ``sizing`` (being counted), ``placed`` (regions known, waiting for a fork),
    ``running`` and ``finished`` (waiting for their turn to merge); at most ``lookahead`` are held at once.
    """

    def __init__(
        self,
        client,
        job: ShardJob,
        writer,
        source: Source,
        shard_records: int,  # noqa: ANN001
        groups: dict[str, str],
        scale: ScaleOptions,
        nworkers: int,
        progress,
    ) -> None:  # noqa: ANN001
        self.client, self.job, self.writer, self.groups = client, job, writer, groups
        self.nworkers, self.progress = nworkers, progress
        self.lookahead = scale.lookahead or 3 * nworkers
        self.shards = iter(cut_shards(source, shard_records))
        self.next_merge = self._skip_merged(source, shard_records)
        self.cursor = dict(writer.totals())  # where the next shard's region starts, per array
        self.deprels = {name: k for k, name in enumerate(writer.deprels)}
        # arrays are grown ahead of the shards (capacity); a fork can only be merged into a session whose arrays
        # have the shapes it was forked with, or into one holding nothing else (Icechunk caches manifest splits
        # per shape: measured), so `epoch` counts the shape changes and older forks are merged alone
        self.capacity = {name: writer.streams[name].array.shape[0] for name in self.cursor}
        self.epoch = 0
        self.sizing: collections.OrderedDict[int, tuple[Shard, object]] = collections.OrderedDict()
        self.placed: collections.deque[_Placed] = collections.deque()
        self.running: dict[object, _Placed] = {}
        self.finished: dict[int, tuple[_Placed, ShardResult]] = {}
        self.input_done = False
        self.clock = _PhaseClock()
        self.totals = {"records": 0, "tokens": 0, "bytes": 0, "truncated": 0, "shards": 0}

    def _skip_merged(self, source: Source, shard_records: int) -> int:
        """Read past the shards a resumed store holds, checking that they are the input it was made from."""
        skip = self.writer.commit.records // shard_records
        shard = None
        for _ in range(skip):
            shard = next(self.shards, None)
            if shard is None:
                raise InputError(source.path, None, "has fewer records than this store holds; give the original input")
        if shard is not None and shard.digest != self.writer.commit.input_digest:
            raise InputError(
                source.path,
                None,
                f"differs from the input this store was started with (records before {self.writer.commit.records} "
                "changed); give the original input, or --overwrite to start again",
            )
        return skip

    def run(self, wait) -> dict:  # noqa: ANN001
        """Until every shard is merged; commits what was merged if anything fails."""
        try:
            while True:
                self.read_ahead()
                self.place()
                self.dispatch()
                self.merge_ready()
                if self.input_done and not (self.sizing or self.placed or self.running or self.finished):
                    return {**self.totals, "phases": dict(self.clock.seconds)}
                self.wait_any(wait)
        except BaseException as exc:
            try:
                self.writer.commit_now()  # whole shards merged so far; the run resumes after them
            except Exception as during:  # noqa: BLE001 - reported with the original error, never dropped
                exc.add_note(f"while stopping: {during}")
            raise
        finally:
            for fut in [*self.running, *(f for _, f in self.sizing.values())]:
                fut.cancel()

    def held(self) -> int:
        return len(self.sizing) + len(self.placed) + len(self.running) + len(self.finished)

    def read_ahead(self) -> None:
        """Cut the next shards and have workers count them. The shard travels inside its tasks (not scattered):
        a re-run after a lost worker still has it."""
        while not self.input_done and self.held() < self.lookahead:
            with self.clock("read"):
                shard = next(self.shards, None)
            if shard is None:
                self.input_done = True
                return
            self.sizing[shard.index] = (shard, self.client.submit(size_shard, self.job, shard, pure=False))

    def place(self) -> None:
        """Give counted shards, in input order, the regions that follow the previous shard's."""
        while self.sizing and next(iter(self.sizing.values()))[1].done():
            index, (shard, fut) = self.sizing.popitem(last=False)
            sizes: ShardSizes = fut.result()
            if sizes.records != shard.records:
                raise AttnxError(f"shard {index}: {sizes.records} records counted, {shard.records} cut")
            count = {"payload": sizes.payload, "rec": sizes.records, "tok": sizes.tokens, "words": sizes.words}
            start = dict(self.cursor)
            for name, group in self.groups.items():
                self.cursor[name] += count[group]
            for name in sizes.deprels:
                self.deprels.setdefault(name, len(self.deprels))
            self.placed.append(_Placed(shard, sizes, start, dict(self.cursor)))

    def dispatch(self) -> None:
        """Send placed shards with forks. A fork needs its region reserved in the commit it starts from and a
        session without uncommitted merges, so shards go in rounds, when no more than one per worker is left
        running: one commit serves a round of about one shard per worker."""
        if not self.placed or len(self.running) > self.nworkers:
            return
        w, last = self.writer, self.placed[-1]
        with self.clock("commit"):
            if any(self.capacity[n] < last.end[n] for n in self.cursor):
                # grow by doubling: every change of shape starts an epoch, so keep them rare
                self.capacity = {n: max(last.end[n], 2 * self.capacity[n]) for n in self.cursor}
                w.reserve(self.capacity)
                w.commit_now(force=True, message=f"attnx: room for shards to {last.shard.index}")
                self.epoch += 1
            elif w.session.has_uncommitted_changes:
                w.commit_now(force=True)
        deprels = self.deprels if "words/head" in self.groups else None
        while self.placed:
            p = self.placed.popleft()
            p.epoch = self.epoch
            with self.clock("dispatch"):
                fork = w.fork()
            fut = self.client.submit(run_shard, self.job, p.shard, fork, p.start, p.end, deprels, pure=False)
            self.running[fut] = p

    def merge_ready(self) -> None:
        """Merge finished shards in input order; commit by bytes or time (at once after an older fork)."""
        w = self.writer
        while self.next_merge in self.finished:
            p, result = self.finished.pop(self.next_merge)
            isolate = p.epoch != self.epoch  # forked before the last change of shape: merged alone
            if isolate and w.session.has_uncommitted_changes:
                with self.clock("commit"):
                    w.commit_now(force=True)
            last_window = (p.shard.end_id - 1) // self.job.window_records if p.shard.records else w.commit.input_window
            with self.clock("merge"):
                w.merge_shard(
                    result.fork,
                    {n: result.edges[n] for n in self.groups},
                    {
                        "records": result.records,
                        "words": result.words,
                        "input_window": last_window,
                        "input_digest": p.shard.digest,
                        "payload_bytes": result.payload_bytes,
                        "deprels": list(p.sizes.deprels),
                    },
                )
            self.clock.add("workers_busy", result.seconds)  # the shards' own run time, not the coordinator's
            t = self.totals
            t["records"] += result.records
            t["tokens"] += result.tokens
            t["bytes"] += result.payload_bytes
            t["truncated"] += result.truncated
            t["shards"] += 1
            self.next_merge += 1
            if self.progress:
                self.progress(t["records"], t["tokens"], t["bytes"])
            with self.clock("commit"):
                if isolate:
                    w.commit_now()
                else:
                    w.maybe_commit()

    def wait_any(self, wait) -> None:  # noqa: ANN001
        """Until a count or a shard finishes; a shard's error (bad input, a worker lost too often) is raised."""
        pending = [f for _, f in self.sizing.values()] + list(self.running)
        if not pending:
            return
        with self.clock("wait"):
            wait(pending, return_when="FIRST_COMPLETED")
        for fut in [f for f in self.running if f.done()]:
            p = self.running.pop(fut)
            self.finished[p.shard.index] = (p, fut.result())


class _PhaseClock:
    """Seconds the coordinator spends in each phase (reported by benchmarks/bench_scale.py)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = collections.defaultdict(float)

    def add(self, phase: str, seconds: float) -> None:
        self.seconds[phase] += seconds

    @contextlib.contextmanager
    def __call__(self, phase: str):  # noqa: ANN204
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[phase] += time.perf_counter() - t0


def _planned_shard_records(opts: ExtractOptions, fmt: str, nworkers: int, cfg: Config) -> int:
    """:func:`plan_shard_records` for the input's record count (counted up to the point where the default
    already gives every worker several shards; stdin: the default)."""
    limit = nworkers * SHARDS_PER_WORKER * DEFAULT_SHARD_RECORDS
    records = count_records(Source(opts.input, fmt, opts.text_field, opts.pair_field), limit)
    return plan_shard_records(records, nworkers, cfg.window_records)


def extract_distributed(
    opts: ExtractOptions,
    cluster: ClusterSpec,
    shard_records: int | None = None,
    progress: Callable[[int, int, int], None] | None = None,
    config: Config | None = None,
    announce: Callable[[str], None] = print,
) -> Summary:
    """Start (or connect to) the cluster ``cluster`` describes and run :func:`extract_on_cluster` on it."""
    if shard_records is not None and shard_records < 1:
        raise AttnxError(f"--shard-records {shard_records}: needs at least 1")
    local = cluster.scheduler is None and cluster.workers != "gpus"
    scale = ScaleOptions(shard_records=shard_records, torch_threads=cluster.torch_threads(), resolve_auto=local)
    with connect(cluster, announce) as client:
        return extract_on_cluster(opts, client, scale, progress, config)


def _job_attrs(attrs: dict) -> dict:
    keys = ("layers", "heads", "payload", "features", "conllu", "dtype")
    return {k: attrs[k] for k in keys if k in attrs}


def _workers_device(client: object, device: str) -> str:
    """The device every worker runs on: ``auto`` is CUDA only where every worker has it."""
    if device != "auto":
        return "cuda" if device.startswith("cuda") else device
    have = client.run(_has_cuda)
    return "cuda" if have and all(have.values()) else "cpu"


def _has_cuda() -> bool:
    return torch.cuda.is_available()


def _measure_precision(model: str, compute: str, device: str, limit: int) -> dict:
    from attnx.engine.precision import measure_precision

    return measure_precision(model, compute, device=device, reference_device=device, limit=limit).to_attrs()
