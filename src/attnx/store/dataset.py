"""The store as an ``xarray.Dataset`` over one committed snapshot (lazy dask arrays; ``xarray`` extra)."""

from __future__ import annotations

import os

import numpy as np

from attnx.errors import StoreError
from attnx.store.location import StoreLocation
from attnx.store.reader import AttentionStore

_GROUPS = ("", "rec", "tok", "words", "index")
_PREFIX = {"tok": "token_", "words": "word_"}  # tok/word would clash with the dimension "word"


def open_dataset(where: str | os.PathLike | StoreLocation, snapshot: str | None = None):  # noqa: ANN201
    """Open a store as an ``xarray.Dataset``: ``attn`` (or ``features``) on dimension ``element``; ``input_id``,
    ``attn_start``, ``length``, ... on ``record``; ``token_ids``, ``token_segment``, ... on ``token``;
    ``word_head``, ``word_deprel`` on ``word``; ``position`` on ``input_record``. The ``attnx`` attributes are
    the dataset's attributes.

    The ``record`` dimension is in input order, as :meth:`AttentionStore.attention` numbers records: ``length[i]``,
    ``line[i]``, ``attn_start[i]``, ... belong to input record ``i`` (``input_id[i] == i`` in a complete store; an
    incomplete one holds the committed records in increasing input id). The payload and token arrays stay in
    the stored (length-sorted) order, which ``attn_start`` and ``tok_start`` index.

    The store is validated first (:class:`AttentionStore`), so a broken store fails here in one line.
    """
    try:
        import xarray as xr
    except ImportError:
        raise StoreError("open_dataset needs xarray: pip install 'attnx[xarray]'") from None
    store = AttentionStore(where, snapshot)
    parts = []
    for group in _GROUPS:
        if group and group not in store.group:
            continue
        ds = xr.open_zarr(store.session.store, group=group or None, consolidated=False, zarr_format=3, chunks={})
        ds = ds.drop_attrs() if hasattr(ds, "drop_attrs") else ds
        if group in _PREFIX:
            ds = ds.rename({name: _PREFIX[group] + name for name in ds.data_vars})
        parts.append(ds)
    merged = xr.merge(parts, combine_attrs="drop")
    # an incomplete store of a distributed run has room reserved past its commit: show the committed part only
    c = store.commit
    counts = {"element": c.attn, "record": c.records, "token": c.tokens, "word": c.words}
    merged = merged.isel({dim: slice(0, n) for dim, n in counts.items() if dim in merged.dims})
    # records are stored length-sorted within windows: offer them in input order, as the API numbers them
    input_id = store._physical["input_id"]
    merged = merged.isel(record=store.position if store.complete else np.argsort(input_id, kind="stable"))
    merged.attrs = {"attnx": store.attrs, "snapshot": store.snapshot_id}
    return merged
