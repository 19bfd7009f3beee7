"""attnx: capture, store and analyse BERT self-attention maps over whole corpora."""

__version__ = "0.1.0"


def open_store(path, snapshot=None):  # noqa: ANN001, ANN201 - re-exported, documented in attnx.store
    """Open an attention store written by ``attnx extract``; see :class:`attnx.store.AttentionStore`."""
    from attnx.store import open_store as _open

    return _open(path, snapshot)


def open_dataset(path, snapshot=None):  # noqa: ANN001, ANN201 - re-exported, documented in attnx.store.dataset
    """Open a store as a lazy ``xarray.Dataset``; see :func:`attnx.store.dataset.open_dataset`."""
    from attnx.store.dataset import open_dataset as _open

    return _open(path, snapshot)


def verify(path):  # noqa: ANN001, ANN201 - re-exported, documented in attnx.store.verify
    """Read every chunk of a store and check every invariant; see :func:`attnx.store.verify.verify_store`."""
    from attnx.store.verify import verify_store

    return verify_store(path)


__all__ = ["__version__", "open_dataset", "open_store", "verify"]
