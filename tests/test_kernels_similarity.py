"""Head-similarity, comparison and relation kernels vs their numpy twins, and on hand-built maps."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.synth import block_from_records, encode, synth_records
from hypothesis import given, settings
from hypothesis import strategies as st

from attnx.kernels.common import kernel_input
from attnx.kernels.compare import compare_maps
from attnx.kernels.reference import compare_ref, js_row, relations_ref, similarity_ref
from attnx.kernels.relations import relation_counts
from attnx.kernels.similarity import head_similarity


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 6), dtype=st.sampled_from(["float16", "uint8"]),
       metric=st.sampled_from(["cosine", "js"]))
def test_similarity_matches_reference(seed: int, n: int, dtype: str, metric: str) -> None:
    rng = np.random.default_rng(seed)
    b = block_from_records(synth_records(rng, n, 2, 2, dtype=dtype, lmin=2, lmax=9), dtype)
    got, count = head_similarity(kernel_input(b.attn, b.scale), b.attn_offsets, b.lengths, 4, metric)
    ref, rcount = similarity_ref(b.attn, b.scale, b.attn_offsets, b.lengths, 4, metric)
    assert count == rcount
    np.testing.assert_allclose(got, ref, atol=2e-6 * max(count, 1), rtol=1e-5)
    np.testing.assert_allclose(got, got.T)


def test_similarity_known_values() -> None:
    """Identical heads: cosine 1, JS 0; heads with disjoint support: cosine 0, JS 1 bit per row."""
    l = 4
    eye = np.eye(l)
    shifted = np.roll(np.eye(l), 1, axis=1)
    maps = np.stack([eye, eye, shifted])
    recs = synth_records(np.random.default_rng(0), 1, 1, 3, dtype="float16", lmin=l, lmax=l,
                         maps_fn=lambda l, la: maps)
    b = block_from_records(recs)
    cos, n = head_similarity(kernel_input(b.attn), b.attn_offsets, b.lengths, 3, "cosine")
    js, rows = head_similarity(kernel_input(b.attn), b.attn_offsets, b.lengths, 3, "js")
    assert n == 1 and rows == l
    assert cos[0, 1] == pytest.approx(1.0) and cos[0, 2] == pytest.approx(0.0)
    assert js[0, 1] / rows == pytest.approx(0.0, abs=1e-7) and js[0, 2] / rows == pytest.approx(1.0, rel=1e-6)
    assert js_row(np.array([1.0, 0]), np.array([0, 1.0])) == pytest.approx(1.0)


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 6))
def test_compare_matches_reference(seed: int, n: int) -> None:
    rng = np.random.default_rng(seed)
    recs = synth_records(rng, n, 1, 3, dtype="float16", lmin=2, lmax=12)
    a = block_from_records(recs)
    noisy = [dict(r, attn=encode(np.clip(r["attn"].astype(np.float64) + rng.normal(0, 0.01, len(r["attn"])), 0, 1),
                                 "float16")) for r in recs]
    b = block_from_records(noisy)
    cos, mad = compare_maps(kernel_input(a.attn), a.attn_offsets[:-1], kernel_input(b.attn), b.attn_offsets[:-1],
                            a.lengths, 3)
    rcos, rmad = compare_ref(a.attn, 1.0, b.attn, 1.0, a.attn_offsets, a.lengths, 3)
    np.testing.assert_allclose(cos, rcos, rtol=1e-5)
    np.testing.assert_allclose(mad, rmad, rtol=1e-6)


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 6), dtype=st.sampled_from(["float16", "uint8"]))
def test_relations_match_reference(seed: int, n: int, dtype: str) -> None:
    rng = np.random.default_rng(seed)
    b = block_from_records(synth_records(rng, n, 2, 2, dtype=dtype, lmin=2, lmax=14), dtype)
    args = (b.attn_offsets, b.lengths, b.tok_offsets, b.special, b.word, b.word_head, b.word_deprel, b.word_offsets)
    got = relation_counts(kernel_input(b.attn, b.scale), *args, 4, 3, 5)
    ref = relations_ref(b.attn, b.scale, *args, 4, 3, 5)
    for g, r in zip(got, ref, strict=True):
        np.testing.assert_array_equal(g, r)


def test_relations_hand_built() -> None:
    """A head that attends from every word to its syntactic head (split words included) scores 1.0;
    the best offset is the one the tree uses."""
    # tokens: [CLS] w0 w1a w1b w2 [SEP]; heads: w0 -> w1, w1 -> root, w2 -> w1 (relation 0 for all)
    word = np.array([-1, 0, 1, 1, 2, -1], np.int32)
    special = np.array([1, 0, 0, 0, 0, 1], bool)
    l = len(word)
    P = np.zeros((l, l))
    P[:, 0] = 1.0  # specials and w1 attend to [CLS], ignored
    P[1] = 0
    P[1, 2], P[1, 3] = 0.3, 0.3  # w0 -> both pieces of w1 (sum 0.6)
    P[1, 4] = 0.4  # more than any single piece, less than the word
    P[4] = 0
    P[4, 3] = 1.0
    P2 = np.zeros((l, l))
    P2[:, 0] = 1.0
    P2[1] = 0
    P2[1, 4] = 1.0  # wrong
    P2[4] = 0
    P2[4, 2] = 1.0
    rec = dict(attn=encode(np.stack([P, P2]).reshape(-1), "float16"), length=l, len_a=l, special=special,
               punct=np.zeros(l, bool), segment=np.zeros(l, np.int8), word=word, ids=np.arange(l, dtype=np.int32),
               n_words=3)
    b = block_from_records([rec], "float16")
    b = type(b)(**{**b.__dict__, "word_head": np.array([1, -1, 1], np.int32),
                   "word_deprel": np.zeros(3, np.int16), "word_offsets": np.array([0, 3])})
    count, correct, off = relation_counts(kernel_input(b.attn), b.attn_offsets, b.lengths, b.tok_offsets, b.special,
                                          b.word, b.word_head, b.word_deprel, b.word_offsets, 2, 1, 3)
    assert count.tolist() == [2]
    assert correct[0].tolist() == [2, 1]
    assert off[0].tolist() == [0, 0, 1, 0, 1, 0, 0]  # offsets -1 (w2 -> w1) and +1 (w0 -> w1)
