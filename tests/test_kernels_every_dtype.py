"""The numba kernels against their float64 reference (``attnx.kernels.reference``) on blocks read back from a
store of every stored dtype: float32, float16, uint8 and q8..q16 (uint16 codes with a 1/(2^N-1) scale).

The reference decodes the stored codes itself (:func:`decode_f64`); the kernels decode through their own tables.
A reference that scaled only uint8 codes read a q12 map as probabilities up to 4095 and no test noticed."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.synth import synth_records, write_store

from attnx.kernels.common import kernel_input
from attnx.kernels.features import map_features, per_map_means
from attnx.kernels.pattern_model import PatternModel, classify_sums, design_matrix
from attnx.kernels.reference import decode_f64, map_features_ref, pattern_proba_ref, similarity_ref
from attnx.kernels.similarity import head_similarity
from attnx.store import open_store
from attnx.stored_dtypes import DTYPES, stored_dtype
from attnx.stored_dtypes import encode as store_encode

L, H, N = 2, 3, 16


@pytest.mark.parametrize("name", sorted(DTYPES))
def test_kernels_on_stored_blocks_match_the_float64_reference(name: str, tmp_path) -> None:  # noqa: ANN001
    d = stored_dtype(name)
    recs = synth_records(np.random.default_rng(11), N, L, H, dtype="float32", lmin=2, lmax=24, pair_frac=0.4)
    probs = [r["attn"].astype(np.float64) for r in recs]
    for r in recs:
        r["attn"] = store_encode(r["attn"], name)
    store = open_store(write_store(tmp_path / f"{name}.zarr", recs, L, H, dtype=name, batch=5))
    model = PatternModel.load()
    seen = 0
    for b in store.blocks(max_bytes=4096):  # several blocks
        seen += len(b.record_ids)
        assert b.attn.dtype == d.storage and b.scale == pytest.approx(d.scale, rel=1e-12)
        p64 = decode_f64(b.attn, b.scale)
        # the reference's decoding gives back the probabilities written, within the dtype's stated error
        written = np.concatenate([probs[int(i)] for i in b.record_ids])
        assert np.abs(p64 - written).max() <= d.max_abs_error

        inp = kernel_input(b.attn, b.scale)
        args = (b.attn_offsets, b.lengths, b.len_a, b.tok_offsets, b.special, b.punct, L, H)
        sums, ref = map_features(inp, *args), map_features_ref(p64, 1.0, *args)
        np.testing.assert_array_less(np.abs(sums - ref) / np.maximum(np.abs(ref), 1.0), 4e-6)

        la = np.minimum(b.len_a, b.lengths)
        n_stripe = np.add.reduceat((b.special | b.punct).astype(np.int64), b.tok_offsets[:-1])
        labels = classify_sums(sums, b.lengths, la, n_stripe, model)
        shp = (-1, 1, 1)
        x_ref = design_matrix(
            per_map_means(ref, b.lengths), b.lengths.reshape(shp), la.reshape(shp), n_stripe.reshape(shp)
        )
        p_ref = pattern_proba_ref(x_ref, model.mean, model.scale, model.coef, model.intercept, model.lo, model.hi)
        np.testing.assert_allclose(labels.prob.reshape(-1), p_ref.max(axis=1), atol=1e-4)
        clear = np.sort(p_ref, axis=1)[:, -1] - np.sort(p_ref, axis=1)[:, -2] > 1e-3  # no near-tie to flip
        assert np.array_equal(labels.codes.reshape(-1)[clear], p_ref.argmax(axis=1)[clear])

        for metric in ("cosine", "js"):
            got, count = head_similarity(inp, b.attn_offsets, b.lengths, L * H, metric)
            want, want_count = similarity_ref(p64, 1.0, b.attn_offsets, b.lengths, L * H, metric)
            assert count == want_count
            np.testing.assert_allclose(got, want, atol=2e-6 * max(count, 1), rtol=1e-5)
    assert seen == N
