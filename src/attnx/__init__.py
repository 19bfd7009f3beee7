"""attnx: capture, store and analyse BERT self-attention maps over whole corpora."""

from attnx._version import __version__


def open_store(path, snapshot=None):  # noqa: ANN001, ANN201 - re-exported, documented in attnx.store
    """Open an attention store written by ``attnx extract``; see :class:`attnx.store.AttentionStore`."""
    from attnx.store import open_store as _open

    return _open(path, snapshot)


def extract(  # noqa: ANN201 - see ExtractOptions
    input,  # noqa: ANN001
    output,  # noqa: ANN001
    progress=None,  # noqa: ANN001
    workers=None,  # noqa: ANN001
    scheduler=None,  # noqa: ANN001
    threads_per_worker=0,  # noqa: ANN001
    shard_records=None,  # noqa: ANN001
    retries=3,  # noqa: ANN001
    **options,  # noqa: ANN003
):
    """Run a model over ``input`` and store its attention in ``output``, as ``attnx extract`` does, with the same
    options and defaults (:class:`attnx.engine.run.ExtractOptions`: ``model``, ``dtype``, ``layers``,
    ``heads``, ``max_length``, ``backend``, ``overwrite``, ...); returns the run's
    :class:`~attnx.engine.run.Summary`. Resumes an interrupted store; leaves a complete one alone.
    ``workers`` (a number, or ``"gpus"``) or ``scheduler`` (an address) run it on a Dask cluster
    (:mod:`attnx.scaleout`); the store is the same."""
    from attnx.engine.extract import ExtractOptions
    from attnx.engine.extract import extract as _extract

    layers, heads = options.pop("layers", None), options.pop("heads", None)
    opts = ExtractOptions(
        input=str(input),
        output=str(output),
        layers=tuple(layers) if layers is not None else None,
        heads=tuple(heads) if heads is not None else None,
        **options,
    )
    from attnx.scaleout.dask_cluster import cluster_spec

    spec = cluster_spec(workers, scheduler, threads_per_worker, retries)
    if spec is not None:
        from attnx.scaleout.coordinator import extract_distributed

        return extract_distributed(opts, spec, shard_records, progress=progress, announce=lambda line: None)
    return _extract(opts, progress=progress)


def open_dataset(path, snapshot=None):  # noqa: ANN001, ANN201 - re-exported, documented in attnx.store.dataset
    """Open a store as a lazy ``xarray.Dataset``; see :func:`attnx.store.dataset.open_dataset`."""
    from attnx.store.dataset import open_dataset as _open

    return _open(path, snapshot)


def verify(path):  # noqa: ANN001, ANN201 - re-exported, documented in attnx.store.verify
    """Read every chunk of a store and check every invariant; see :func:`attnx.store.verify.verify_store`."""
    from attnx.store.verify import verify_store

    return verify_store(path)


__all__ = ["__version__", "extract", "open_dataset", "open_store", "verify"]
