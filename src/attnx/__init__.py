"""attnx: capture, store and analyse BERT self-attention maps over whole corpora."""

__version__ = "0.1.0"


def open_store(path):  # noqa: ANN001, ANN201 - re-exported, documented in attnx.store
    """Open an attention store written by ``attnx extract``; see :class:`attnx.store.AttentionStore`."""
    from attnx.store import open_store as _open

    return _open(path)


__all__ = ["__version__", "open_store"]
