"""The learned pattern classifier: packaged JSON model, numpy twin, hand-built maps of every type."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers.synth import block_from_records, encode

from attnx.errors import InputError
from attnx.kernels.common import kernel_input
from attnx.kernels.features import map_features, per_map_means
from attnx.kernels.names import PATTERNS, F
from attnx.kernels.pattern_model import DESIGN, PatternModel, classify, classify_means, classify_sums, design_matrix
from attnx.kernels.patterns import Thresholds
from attnx.kernels.reference import map_features_ref, pattern_proba_ref

PACKAGED = Path(__file__).resolve().parents[1] / "src" / "attnx" / "data" / "pattern_model.json"


def test_thresholds_defaults_are_the_packaged_file() -> None:
    """One source of truth: the dataclass defaults equal the packaged thresholds JSON."""
    assert Thresholds() == Thresholds.load()


def test_packaged_model_is_plain_json() -> None:
    d = json.loads(PACKAGED.read_text())
    assert d["kind"] == "softmax" and d["classes"] == list(PATTERNS) and d["features"] == list(DESIGN)
    m = PatternModel.load()
    assert m.coef.shape == (len(PATTERNS), len(DESIGN)) and 0.2 < m.uncertain_below < 1
    assert len(m.digest) == 16


def test_packaged_model_is_version_7_trained_on_all_v2_v3_v4_labels() -> None:
    """Version 7: chosen by CV over every non-disputed v2 + v3 + v4 map and refitted on all of them (v4's one look
    is spent, so it is training data; the v5 test sample is scored separately, never trained on)."""
    m = PatternModel.load()
    t = m.info["training"]
    assert m.info["version"] == 7 and t["data"] == "all4" and t["train_items"] == 1992
    assert t["model"].startswith("logreg") and 0.85 < t["cv_macro_f1"] < 0.9
    assert "held_out_macro_f1" not in t  # nothing was scored on held-out maps


@pytest.mark.parametrize("edit", ["classes", "coef", "scale", "text", "range"])
def test_bad_model_file_is_one_line_error(tmp_path: Path, edit: str) -> None:
    d = json.loads(PACKAGED.read_text())
    if edit == "classes":
        d["classes"] = d["classes"][::-1]
    elif edit == "coef":
        d["coef"] = d["coef"][:-1]
    elif edit == "scale":
        d["scale"][0] = 0.0
    elif edit == "range":
        d["lo"][0] = d["hi"][0] + 1
    path = tmp_path / "m.json"
    path.write_text("{not json" if edit == "text" else json.dumps(d))
    with pytest.raises(InputError) as exc:
        PatternModel.load(path)
    assert str(path) in str(exc.value) and "\n" not in str(exc.value)


def test_proba_matches_reference_on_random_features() -> None:
    m = PatternModel.load()
    rng = np.random.default_rng(0)
    x = m.mean + m.scale * rng.normal(size=(40, len(DESIGN))) * 2
    p = m.proba(x)
    ref = pattern_proba_ref(x, m.mean, m.scale, m.coef, m.intercept, m.lo, m.hi)
    np.testing.assert_allclose(p, ref, rtol=1e-10, atol=1e-12)
    lab = classify(x, m)
    top = np.sort(p, axis=1)
    assert np.array_equal(lab.codes, p.argmax(axis=1))
    np.testing.assert_allclose(lab.prob, top[:, -1], rtol=1e-6)
    np.testing.assert_allclose(lab.margin, top[:, -1] - top[:, -2], rtol=1e-5, atol=1e-7)


def _hand_built(l: int = 30, la: int = 14, seed: int = 0) -> tuple[np.ndarray, list[str], list[int]]:
    """One map of each type (Kovaleva et al. 2019, Fig. 1), with a little noise, and each record's len_a."""
    rng = np.random.default_rng(seed)
    eye = np.eye(l)
    prev = np.roll(eye, -1, axis=1)
    prev[0] = eye[0]
    noise = rng.dirichlet(np.ones(l), l)
    vertical = np.zeros((l, l))
    vertical[:, 0] = 0.85
    vertical[:, l - 1] = 0.1
    vertical = vertical + 0.05 * noise
    diagonal = 0.85 * prev + 0.1 * eye + 0.05 * noise
    vd = 0.45 * prev + np.outer(np.ones(l), eye[0]) * 0.5 + 0.05 * noise
    seg = np.arange(l) >= la
    within = (seg[:, None] == seg[None, :]).astype(float) * rng.uniform(0.5, 1.5, (l, l))
    within /= within.sum(axis=1, keepdims=True)
    # block as MiniLM's labelled block maps look (mean [CLS] mass 0.40 in validation/pattern_labels_v2.csv):
    # most rows spread inside their own segment under a [CLS] column. A block with no [CLS] column at all
    # lies outside the training data and is labelled diagonal by version 7 (see validation/README.md).
    block = 0.4 * np.outer(np.ones(l), eye[0]) + 0.55 * within + 0.05 * noise
    hetero = np.zeros((l, l))
    for i in range(l):  # scattered: far-away keys that change with every query
        hetero[i, (i * 7 + 3) % l] = 0.5
        hetero[i, (i * 11 + 5) % l] += 0.3
    hetero = hetero + 0.2 * noise
    maps = [vertical, diagonal, vd, block, hetero]
    return (np.stack([m / m.sum(axis=1, keepdims=True) for m in maps]), list(PATTERNS), [l, l, l, la, l])


def _run(maps: np.ndarray, len_as: list[int], dtype: str) -> tuple[np.ndarray, np.ndarray]:
    """Each map as its own record (one layer, one head); returns (kernel sums, reference sums), (n, 1, 1, NF)."""
    l = maps.shape[-1]
    recs = []
    for m, la in zip(maps, len_as, strict=True):
        special = np.zeros(l, bool)
        special[[0, l - 1] + ([la - 1] if la < l else [])] = True
        recs.append(dict(attn=encode(m.reshape(-1), dtype), length=l, len_a=la, special=special,
                         punct=np.zeros(l, bool), segment=(np.arange(l) >= la).astype(np.int8),
                         word=np.arange(l, dtype=np.int32) - 1, ids=np.arange(l, dtype=np.int32), n_words=l - 2))
    b = block_from_records(recs, dtype)
    args = (b.attn_offsets, b.lengths, b.len_a, b.tok_offsets, b.special, b.punct, 1, 1)
    return map_features(kernel_input(b.attn, b.scale), *args), map_features_ref(b.attn, b.scale, *args)


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_hand_built_maps_of_each_type(dtype: str) -> None:
    """Kernel -> design -> model labels each hand-built map with its type, and agrees with the numpy twin."""
    maps, want, len_as = _hand_built()
    got, ref = _run(maps, len_as, dtype)
    l = maps.shape[-1]
    lengths = np.full((len(maps), 1, 1), l)
    la = np.array(len_as).reshape(-1, 1, 1)
    n_stripe = np.array([2 if a == l else 3 for a in len_as]).reshape(-1, 1, 1)
    m = PatternModel.load()
    lab = classify_means(per_map_means(got, lengths[:, 0, 0]), lengths, la, n_stripe, m)
    x_ref = design_matrix(per_map_means(ref, lengths[:, 0, 0]), lengths, la, n_stripe)
    p_ref = pattern_proba_ref(x_ref, m.mean, m.scale, m.coef, m.intercept, m.lo, m.hi)
    assert [PATTERNS[c] for c in lab.codes[:, 0, 0]] == want
    np.testing.assert_allclose(lab.prob[:, 0, 0], p_ref.max(axis=1), atol=2e-3 if dtype == "float16" else 1e-5)
    fused = classify_sums(got, lengths[:, 0, 0], la[:, 0, 0], n_stripe[:, 0, 0], m)  # what analyze runs
    assert np.array_equal(fused.codes, lab.codes)
    np.testing.assert_allclose(fused.prob, lab.prob, rtol=1e-5)


def test_fused_numba_classifier_matches_numpy_path() -> None:
    """classify_sums (numba, from row sums) == design_matrix + PatternModel.proba on random ragged records."""
    from helpers.synth import synth_records

    rng = np.random.default_rng(3)
    recs = synth_records(rng, 25, 2, 3, dtype="float16", lmin=2, lmax=40, pair_frac=0.5)
    b = block_from_records(recs, "float16")
    sums = map_features(kernel_input(b.attn, b.scale), b.attn_offsets, b.lengths, b.len_a, b.tok_offsets,
                        b.special, b.punct, 2, 3)
    la = np.minimum(b.len_a, b.lengths)
    n_stripe = np.add.reduceat((b.special | b.punct).astype(np.int64), b.tok_offsets[:-1])
    m = PatternModel.load()
    fused = classify_sums(sums, b.lengths, la, n_stripe, m)
    shp = (-1, 1, 1)
    ref = classify_means(per_map_means(sums, b.lengths), b.lengths.reshape(shp), la.reshape(shp),
                         n_stripe.reshape(shp), m)
    assert fused.codes.shape == (25, 2, 3)
    assert np.array_equal(fused.codes, ref.codes)
    np.testing.assert_allclose(fused.prob, ref.prob, rtol=1e-5)
    np.testing.assert_allclose(fused.margin, ref.margin, rtol=1e-4, atol=1e-6)
    empty = classify_sums(sums[:0], b.lengths[:0], la[:0], n_stripe[:0], m)
    assert empty.codes.shape == (0, 2, 3)


def test_new_features_exact_on_uniform_map() -> None:
    """band2, col_sq and seg_block of a uniform single-sentence map ([CLS] at 0, [SEP] at l-1)."""
    l = 9
    got, ref = _run(np.full((1, l, l), 1.0 / l), [l], "float32")
    mean = per_map_means(got, np.array([l]))[0, 0, 0]
    assert mean[F["band2"]] == pytest.approx(2 * (l - 2) / l / l, rel=1e-6)
    assert mean[F["col_sq"]] == pytest.approx(1.0 / l, rel=1e-6)  # Herfindahl index of l equal columns
    i, j = np.indices((l, l))
    cells = (np.abs(i - j) > 1) & (j > 0) & (j < l - 1)
    assert mean[F["seg_block"]] == pytest.approx(cells.sum() / l / l, rel=1e-6)  # row sums / l
    np.testing.assert_allclose(got, ref, rtol=1e-6)


def test_design_bounded_when_almost_every_token_is_a_stripe() -> None:
    """A record of punctuation (uniform chance of stripe mass ~1) must not blow up the chance correction."""
    l = 12
    special = np.zeros(l, bool)
    special[[0, l - 1]] = True
    punct = ~special
    maps = np.stack([np.full((l, l), 1.0 / l), np.eye(l)])
    recs = [dict(attn=encode(maps.reshape(-1), "float32"), length=l, len_a=l, special=special, punct=punct,
                 segment=np.zeros(l, np.int8), word=np.arange(l, dtype=np.int32) - 1,
                 ids=np.arange(l, dtype=np.int32), n_words=l - 2)]
    b = block_from_records(recs, "float32")
    sums = map_features(kernel_input(b.attn, b.scale), b.attn_offsets, b.lengths, b.len_a, b.tok_offsets,
                        b.special, b.punct, 1, 2)
    x = design_matrix(per_map_means(sums, b.lengths), np.array([[[l]]]), np.array([[[l]]]), np.array([[[l]]]))
    assert np.isfinite(x).all() and np.abs(x[..., :-1]).max() <= np.log(l) + 1e-9
    ref = classify(x)
    fused = classify_sums(sums, b.lengths, b.len_a, np.array([l]))
    assert np.array_equal(fused.codes, ref.codes)
    np.testing.assert_allclose(fused.prob, ref.prob, rtol=1e-5)


SHORT_LIMIT = pytest.mark.xfail(strict=True, reason="known limit of the shipped model: a perfect previous-token "
                                "map of 5 tokens or fewer (version 6: 10 or fewer; versions 4-5: below ~15) is not "
                                "labelled diagonal (validation/README.md)")


@pytest.mark.parametrize("l", [pytest.param(4, marks=SHORT_LIMIT), pytest.param(5, marks=SHORT_LIMIT), 6, 10, 14, 20,
                               40])
def test_previous_token_map_is_diagonal_at_any_length(l: int) -> None:
    """MiniLM's L0H2 (previous token): a pure previous-token map is diagonal. Features are clipped to the
    labelled range; version 7 labels it diagonal from 6 tokens on (p 0.62 at 6, 0.83-0.85 at 7-8, >= 0.95 from 9),
    block at 3-4 (p 0.57 at 4) and vertical_diagonal at 5; version 6 failed at 4-8 and 10, versions 4-5 below ~15
    (strict xfail: flags a fix)."""
    eye = np.eye(l)
    prev = np.roll(eye, -1, axis=1)
    prev[0] = eye[0]
    got, _ = _run(prev[None], [l], "float16")
    lab = classify_sums(got, np.array([l]), np.array([l]), np.array([2]))
    assert PATTERNS[int(lab.codes[0, 0, 0])] == "diagonal"
