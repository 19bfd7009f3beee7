"""Feature kernel vs its numpy twin (random ragged inputs, every dtype) and on hand-built maps."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from helpers.synth import block_from_records, encode, synth_records
from hypothesis import given, settings
from hypothesis import strategies as st

from attnx.kernels.common import balanced_bounds, kernel_input, tables
from attnx.kernels.features import map_features, per_map_means
from attnx.kernels.names import (
    BLOCK,
    DIAGONAL,
    HETEROGENEOUS,
    MAP_FEATURES,
    NF,
    PATTERNS,
    VERTICAL,
    VERTICAL_DIAGONAL,
    F,
)
from attnx.kernels.patterns import Thresholds, classify_maps
from attnx.kernels.reference import map_features_ref
from attnx.stored_dtypes import DTYPES, stored_dtype
from attnx.stored_dtypes import encode as store_encode

RTOL = 1e-6


def run_both(block, L, H):  # noqa: ANN001, ANN201
    got = map_features(kernel_input(block.attn, block.scale), block.attn_offsets, block.lengths, block.len_a,
                       block.tok_offsets, block.special, block.punct, L, H)
    ref = map_features_ref(block.attn, block.scale, block.attn_offsets, block.lengths, block.len_a,
                           block.tok_offsets, block.special, block.punct, L, H)
    return got, ref


def assert_close(got: np.ndarray, ref: np.ndarray) -> None:
    # float32 accumulation inside a map: relative 1e-6 of the map's scale (l rows of mass 1)
    scale = np.maximum(np.abs(ref), 1.0)
    np.testing.assert_array_less(np.abs(got - ref) / scale, RTOL * 4)


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 9), dtype=st.sampled_from(["float16", "uint8", "float32"]),
       lmax=st.sampled_from([2, 5, 23]))
def test_features_match_reference_random(seed: int, n: int, dtype: str, lmax: int) -> None:
    rng = np.random.default_rng(seed)
    recs = synth_records(rng, n, 2, 3, dtype=dtype, lmin=2, lmax=lmax, pair_frac=0.5)
    block = block_from_records(recs, dtype)
    got, ref = run_both(block, 2, 3)
    assert got.shape == (n, 2, 3, NF)
    assert_close(got, ref)


@pytest.mark.parametrize("dtype", ["float16", "uint8"])
def test_features_awkward_zeros_and_one_hot(dtype: str) -> None:
    """uint8 zeros, all mass on one token, length 2."""
    l = 2
    one_hot = np.zeros((1, l, l))
    one_hot[0, :, 0] = 1.0
    recs = synth_records(np.random.default_rng(0), 3, 1, 1, dtype=dtype, lmin=2, lmax=2,
                         maps_fn=lambda l, la: one_hot)
    got, ref = run_both(block_from_records(recs, dtype), 1, 1)
    assert_close(got, ref)
    m = got[0, 0, 0]
    assert m[F["cls"]] == pytest.approx(2.0)  # both rows put everything on [CLS]
    assert m[F["entropy"]] == pytest.approx(0.0, abs=1e-6)
    assert m[F["max_weight"]] == pytest.approx(2.0)


def _record(maps: np.ndarray, special: np.ndarray, punct: np.ndarray, la: int | None = None) -> dict:
    l = maps.shape[-1]
    return dict(attn=encode(maps.reshape(-1), "float32"), length=l, len_a=la or l, special=special, punct=punct,
                segment=(np.arange(l) >= (la or l)).astype(np.int8), word=np.arange(l, dtype=np.int32) - 1,
                ids=np.arange(l, dtype=np.int32), n_words=l - 2)


def _single(l: int) -> tuple[np.ndarray, np.ndarray]:
    special = np.zeros(l, bool)
    special[[0, l - 1]] = True
    return special, np.zeros(l, bool)


def test_hand_built_features_exact() -> None:
    """Known values: previous-token map, uniform map, [SEP] stripe."""
    l = 6
    special, punct = _single(l)
    prev = np.zeros((l, l))
    prev[0, 0] = 1.0
    for i in range(1, l):
        prev[i, i - 1] = 1.0
    uniform = np.full((l, l), 1.0 / l)
    sep = np.zeros((l, l))
    sep[:, l - 1] = 1.0
    maps = np.stack([prev, uniform, sep])
    block = block_from_records([_record(maps, special, punct)], "float32")
    got, ref = run_both(block, 1, 3)
    assert_close(got, ref)
    means = per_map_means(got, block.lengths)[0, 0]
    p, u, s = means
    assert p[F["prev"]] == pytest.approx((l - 1) / l)
    assert p[F["self"]] == pytest.approx(1 / l)
    assert p[F["distance"]] == pytest.approx((l - 1) / l)
    assert p[F["entropy"]] == pytest.approx(0.0, abs=1e-7)
    assert u[F["entropy"]] == pytest.approx(np.log(l), rel=1e-6)
    assert u[F["cls_entropy"]] == pytest.approx(np.log(l), rel=1e-6)
    assert u[F["max_weight"]] == pytest.approx(1 / l)
    assert u[F["distance"]] == pytest.approx(np.abs(np.arange(l)[:, None] - np.arange(l)).mean(), rel=1e-6)
    assert s[F["sep"]] == pytest.approx(1.0)
    assert s[F["sep_max"]] == pytest.approx(1.0)
    assert s[F["col_max"]] == pytest.approx(1.0)


def test_hand_built_patterns() -> None:
    """Single sentences: one map of each type but block (Kovaleva et al. Fig. 1) is classified as such;
    a diffuse single-sentence map is heterogeneous (block needs a sentence pair)."""
    l = 12
    special, punct = _single(l)
    punct[5] = True
    vertical = np.zeros((l, l))
    vertical[:, 0] = 0.5
    vertical[:, l - 1] = 0.4
    vertical[:, 5] = 0.1
    diagonal = np.zeros((l, l))
    for i in range(l):
        diagonal[i, max(i - 1, 0)] += 0.9
        diagonal[i, i] += 0.1
    vd = 0.5 * vertical + 0.5 * diagonal
    rng = np.random.default_rng(1)
    block_single = np.full((l, l), 1.0 / l) * 0.9 + rng.dirichlet(np.ones(l), l) * 0.1
    hetero = np.zeros((l, l))
    for i in range(l):  # scattered: a different far-away key for every query
        hetero[i, (i * 5 + 3) % l] = 0.6
        hetero[i, (i * 7 + 2) % l] += 0.4
    maps = np.stack([vertical, diagonal, vd, block_single, hetero])
    block = block_from_records([_record(maps, special, punct)], "float32")
    got, _ = run_both(block, 1, 5)
    means = per_map_means(got, block.lengths)
    n_stripe = 3
    codes = classify_maps(means, np.array([[[l]]]), np.array([[[l]]]), np.array([[[n_stripe]]]))
    assert [PATTERNS[c] for c in codes[0, 0]] == [PATTERNS[k] for k in
                                                  (VERTICAL, DIAGONAL, VERTICAL_DIAGONAL, HETEROGENEOUS, HETEROGENEOUS)]


def test_block_pattern_in_pairs() -> None:
    """A pair whose rows spread within their own segment is a block; attending across is not."""
    l, la = 30, 14
    special = np.zeros(l, bool)
    special[[0, la - 1, l - 1]] = True
    seg = np.arange(l) >= la
    within = (seg[:, None] == seg[None, :]).astype(float)
    within /= within.sum(axis=1, keepdims=True)
    across = (seg[:, None] != seg[None, :]).astype(float)
    across /= across.sum(axis=1, keepdims=True)
    block = block_from_records([_record(np.stack([within, across]), special, np.zeros(l, bool), la)], "float32")
    got, ref = run_both(block, 1, 2)
    assert_close(got, ref)
    means = per_map_means(got, block.lengths)
    assert means[0, 0, 0, F["own_segment"]] == pytest.approx(1.0)
    assert means[0, 0, 1, F["own_segment"]] == pytest.approx(0.0, abs=1e-7)
    codes = classify_maps(means, np.array([[[l]]]), np.array([[[la]]]), np.array([[[3]]]))
    assert codes[0, 0, 0] == BLOCK and codes[0, 0, 1] == HETEROGENEOUS


def test_thresholds_file_and_tables() -> None:
    t = Thresholds.load()
    assert 0 < t.vertical < 1 and 0 < t.block_own_segment <= 1
    lut, pl = tables("float16")
    assert lut.shape == (65536,) and pl[0] == 0.0
    half = np.float16(0.5).view(np.uint16)
    assert lut[half] == 0.5 and pl[half] == pytest.approx(0.5 * np.log(0.5))
    assert len(MAP_FEATURES) == NF


def test_balanced_bounds_cover_all_records() -> None:
    lengths = np.array([50, 2, 2, 2, 2, 2, 40, 3, 3, 3])
    b = balanced_bounds(lengths, parts=3)
    assert b[0] == 0 and b[-1] == len(lengths) and np.all(np.diff(b) > 0)
    assert balanced_bounds(np.array([], np.int64)).tolist() == [0]


def test_map_max_and_diagonal_brightness_on_hand_built_maps() -> None:
    """``map_max`` = l x the map's largest weight; ``diag_best`` / ``diag_vis`` (design features) pick the
    strongest single diagonal and its brightness on a 0..max scale, for previous- and next-token maps."""
    from attnx.kernels.pattern_model import DESIGN, design_matrix

    l = 9
    special, punct = _single(l)
    prev = np.zeros((l, l))
    prev[0, 0] = 1.0
    prev[np.arange(1, l), np.arange(l - 1)] = 1.0  # previous token
    nxt = np.zeros((l, l))
    nxt[np.arange(l - 1), np.arange(1, l)] = 0.5  # next token at half weight, the rest on [CLS]
    nxt[np.arange(l - 1), 0] += 0.5
    nxt[l - 1, 0] = 1.0
    uniform = np.full((l, l), 1.0 / l)
    block = block_from_records([_record(np.stack([prev, nxt, uniform]), special, punct)], "float32")
    got, ref = run_both(block, 1, 3)
    assert_close(got, ref)
    means = per_map_means(got, block.lengths)[0, 0]
    assert means[:, F["map_max"]] == pytest.approx([1.0, 1.0, 1.0 / l])  # nxt: its last row is all on [CLS]
    x = design_matrix(means, np.array([l]), np.array([l]), np.array([3]))
    best, vis = x[:, DESIGN.index("diag_best")], x[:, DESIGN.index("diag_vis")]
    d = l - 1  # rows that have the diagonal
    assert best[0] == pytest.approx((d / l - 1 / l) / (1 - 1 / l))
    assert best[1] == pytest.approx((0.5 * d / l - 1 / l) / (1 - 1 / l))
    assert best[2] == pytest.approx(0.0, abs=1e-6)
    assert vis.tolist() == pytest.approx([d / l, 0.5 * d / l, 1.0])



@pytest.mark.parametrize("name", sorted(DTYPES))
def test_features_match_the_float64_reference_on_every_stored_dtype(name: str) -> None:
    """Every dtype a store can hold, encoded as the store encodes it (q9..q16: uint16 codes with a scale)."""
    d = stored_dtype(name)
    recs = synth_records(np.random.default_rng(7), 12, 2, 3, dtype="float32", lmin=2, lmax=16)
    codes = [store_encode(r["attn"], name) for r in recs]
    block = replace(block_from_records(recs, dtype="float32"), attn=np.concatenate(codes), scale=d.scale)
    got, ref = run_both(block, 2, 3)
    assert_close(got, ref)
    # the reference reads the codes as the probabilities they stand for
    decoded = block.attn.astype(np.float64) * (d.scale if np.issubdtype(block.attn.dtype, np.integer) else 1.0)
    want = map_features_ref(decoded, 1.0, block.attn_offsets, block.lengths, block.len_a, block.tok_offsets,
                            block.special, block.punct, 2, 3)
    np.testing.assert_allclose(ref, want, rtol=1e-12, atol=1e-12)
