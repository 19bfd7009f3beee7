"""Value checks on every decoded block: what the kernels and users rely on, checked cheaply on every read.

Opening a store checks its attributes and per-record offsets (:mod:`attnx.store.validate`); the values inside
the chunks are checked here, block by block, as the reader decodes them:

* maps: every weight finite and in [0, 1] (quantised codes at most the dtype's levels), every row summing to 1
  within the stored dtype's bound (:func:`row_sum_tolerance`);
* features (--stats-only stores): finite;
* tokens: ids in the vocabulary, segments 0/1, word ids in -1..(words of the record) - 1;
* words (CoNLL-U stores): heads in -1..(words of the record) - 1, relations indices into ``deprels``.

A failure is a one-line :class:`StoreError` naming the input record. The map check is one numba pass per
block (:func:`first_bad_map`; the kernels in :mod:`attnx.store.checks_kernels`, imported on the first read so
that opening a store or extracting never imports numba) run on the reader's threads, with a numpy twin
(:func:`first_bad_map_reference`) the tests compare it with.
"""

from __future__ import annotations

import numpy as np

from attnx.errors import StoreError
from attnx.store.block import AttentionBlock
from attnx.store.check_codes import BAD_SUM, OUT_OF_RANGE
from attnx.store.layout import STORED_DTYPES


def row_sum_tolerance(dtype: str, length: np.ndarray | int) -> np.ndarray | float:
    """Largest |sum_j P[i, j] - 1| the stored dtype allows for rows of ``length`` keys (fp32 softmax: 1e-5)."""
    bound = STORED_DTYPES[dtype]
    if bound.scale != 1.0:  # rounding to a grid: each element off by at most the bound
        return length * bound.max_abs_error + 1e-5
    return np.zeros(np.shape(length)) + (2 * bound.max_abs_error + 1e-5)


def map_limits(dtype: str) -> tuple[float, float, float]:
    """``(hi, tol0, tol1)`` of the feature kernel's value check (:func:`attnx.kernels.features.map_features_checked`)
    for maps stored as ``dtype``, the rule of :func:`first_bad_map` on decoded float32 values: a weight above
    ``hi`` (1, or for quantised dtypes the code ``levels``, with half a step for float32 decoding) or a row sum
    off 1 by more than ``tol0 + l * tol1`` (:func:`row_sum_tolerance`)."""
    spec = STORED_DTYPES[dtype]
    if spec.quantised:
        return 1.0 + 0.5 * spec.scale, 1e-5, spec.max_abs_error
    return 1.0, float(row_sum_tolerance(dtype, 1)), 0.0


def bad_map_problem(why: int, row_sum: float) -> str:
    """The words of a map check failure (the same from every check)."""
    if why == OUT_OF_RANGE:
        return "an attention weight is negative, above 1 or not a number"
    return f"an attention row sums to {row_sum:.6g}, not 1"


def raise_flagged_map(block: AttentionBlock, flags: np.ndarray, where: str) -> None:
    """Raise the check's one-line error for the first record of ``block`` the feature kernel flagged
    (``flags``: ``(b, 2)`` why, row sum); nothing when none is."""
    bad = np.flatnonzero(flags[:, 0])
    if len(bad):
        k = int(bad[0])
        raise StoreError(
            f"{where}: record {int(block.record_ids[k])}: {bad_map_problem(int(flags[k, 0]), float(flags[k, 1]))} "
            "(the store is damaged; `attnx verify` checks all of it)"
        )


def first_bad_map(
    attn: np.ndarray, attn_offsets: np.ndarray, lengths: np.ndarray, n_maps: int, dtype: str
) -> tuple[int, int, float]:
    """The first record (index into the block) whose maps are not probability rows within ``dtype``'s bound:
    ``(k, OUT_OF_RANGE | BAD_SUM, the row's sum)``, or ``(-1, 0, 1.0)`` when every row is good.

    ``attn``: the block's flat stored values (``n_maps`` maps ``(l, l)`` per record at ``attn_offsets``)."""
    from attnx.store.checks_kernels import _code_rows, _float_rows, _half_rows  # numba: compiled on first read

    offsets = np.ascontiguousarray(attn_offsets, np.int64)
    lengths = np.ascontiguousarray(lengths, np.int64)
    spec = STORED_DTYPES[dtype]
    if spec.quantised:
        k, why, s = _code_rows(attn, offsets, lengths, n_maps, spec.levels, spec.max_abs_error)
    elif attn.dtype == np.float16:
        k, why, s = _half_rows(attn.view(np.uint16), offsets, lengths, n_maps, float(row_sum_tolerance(dtype, 1)))
    else:
        k, why, s = _float_rows(attn, offsets, lengths, n_maps, float(row_sum_tolerance(dtype, 1)))
    return int(k), int(why), float(s)


def first_bad_map_reference(
    attn: np.ndarray, attn_offsets: np.ndarray, lengths: np.ndarray, n_maps: int, dtype: str
) -> tuple[int, int, float]:
    """Plain numpy twin of :func:`first_bad_map` (one record at a time, float64), for the tests."""
    spec = STORED_DTYPES[dtype]
    for k, l in enumerate(np.asarray(lengths, np.int64)):
        rows = np.asarray(attn[attn_offsets[k] : attn_offsets[k] + n_maps * l * l]).reshape(n_maps * l, l)
        values = rows.astype(np.float64) * spec.scale
        if spec.quantised:
            out = rows.astype(np.int64) > spec.levels
        else:
            out = ~((values >= 0) & (values <= 1))  # NaN fails both
        sums = values.sum(axis=1)
        bad_sum = ~(np.abs(sums - 1.0) <= row_sum_tolerance(spec.name, int(l)))
        for r in range(n_maps * l):
            if out[r].any():
                return k, OUT_OF_RANGE, float(sums[r])
            if bad_sum[r]:
                return k, BAD_SUM, float(sums[r])
    return -1, 0, 1.0


def check_block(
    block: AttentionBlock, dtype: str, payload: str, vocab_size: int, n_deprels: int, where: str, maps: bool = True
) -> None:
    """Raise a one-line :class:`StoreError` naming the input record at fault unless every value of the block
    is what the kernels rely on (see the module docstring). ``maps=False`` leaves the maps' values to the
    caller (``analyze`` checks them inside its feature kernel: :func:`raise_flagged_map`)."""

    def fail(k: int, what: str) -> None:
        raise StoreError(
            f"{where}: record {int(block.record_ids[k])}: {what} (the store is damaged; "
            f"`attnx verify` checks all of it)"
        )

    if payload == "maps" and maps:
        k, why, s = first_bad_map(block.attn, block.attn_offsets, block.lengths, block.n_layers * block.n_heads, dtype)
        if k >= 0:
            fail(k, bad_map_problem(why, s))
    elif payload != "maps" and not np.isfinite(block.attn).all():
        sizes = np.diff(block.attn_offsets)
        fail(
            int(np.searchsorted(np.cumsum(sizes), np.flatnonzero(~np.isfinite(block.attn))[0], "right")),
            "a feature value is not finite",
        )
    check_words(block, vocab_size, n_deprels, fail)


def check_words(block: AttentionBlock, vocab_size: int, n_deprels: int, fail) -> None:  # noqa: ANN001
    """Token ids, segments, word ids and (CoNLL-U) heads and relations of a block, vectorised."""
    owner = np.repeat(np.arange(len(block)), np.diff(block.tok_offsets))
    words = np.diff(block.word_offsets)
    conllu = len(block.word_offsets) == len(block) + 1  # else the empty default of a plain store
    # word ids: below the record's words in CoNLL-U stores, below its tokens otherwise
    word_limit = words[owner] if conllu else block.lengths[owner]
    checks = (
        (
            (block.token_ids < 0) | (block.token_ids >= vocab_size),
            f"a token id is outside the vocabulary (0..{vocab_size - 1})",
        ),
        ((block.segment < 0) | (block.segment > 1), "a token segment is not 0 or 1"),
        ((block.word < -1) | (block.word >= word_limit), "a token's word index is out of range"),
    )
    for bad, problem in checks:
        if bad.any():
            fail(int(owner[np.flatnonzero(bad)[0]]), problem)
    if len(block.word_head):
        wowner = np.repeat(np.arange(len(words)), words)
        bad = (block.word_head < -1) | (block.word_head >= words[wowner])
        if bad.any():
            fail(int(wowner[np.flatnonzero(bad)[0]]), "a word's head (words/head) is out of range")
        bad = (block.word_deprel < 0) | (block.word_deprel >= n_deprels)
        if bad.any():
            fail(int(wowner[np.flatnonzero(bad)[0]]), f"a word's relation (words/deprel) is outside 0..{n_deprels - 1}")


def check_record_maps(flat: np.ndarray, l: int, n_maps: int, dtype: str, record: int, where: str) -> None:
    """One record's stored maps (``AttentionStore.attention``): the block check on a block of one record."""
    k, why, s = first_bad_map(flat, np.zeros(1, np.int64), np.array([l]), n_maps, dtype)
    if k >= 0:
        raise StoreError(
            f"{where}: record {record}: {bad_map_problem(why, s)} "
            "(the store is damaged; `attnx verify` checks all of it)"
        )


def check_record_words(head: np.ndarray, deprel: np.ndarray, n_deprels: int, record: int, where: str) -> None:
    """One record's ``(head, deprel)`` per word (``AttentionStore.dependencies``)."""
    w = len(head)
    if ((head < -1) | (head >= w)).any() or ((deprel < 0) | (deprel >= n_deprels)).any():
        raise StoreError(f"{where}: record {record}: a word's head or relation is out of range (the store is damaged)")


def check_record_word_ids(word: np.ndarray, limit: int, record: int, where: str) -> None:
    """One record's ``tok/word``: -1 (special tokens) or below ``limit`` (its words, or its tokens)."""
    if ((word < -1) | (word >= limit)).any():
        raise StoreError(f"{where}: record {record}: a token's word index is out of range (the store is damaged)")
