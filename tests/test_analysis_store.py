"""Streaming drivers over synthetic stores written through the store API, and the click commands."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from helpers.synth import synth_records, write_store

import attnx
from attnx.analysis import AnalyzeParams, Partial, analyze_store, compare_stores, feature_means, write_results
from attnx.analysis.head_clusters import cluster_heads
from attnx.cli.analyze import analyze, compare, report
from attnx.errors import AttnxError, StoreError
from attnx.kernels.names import PATTERNS, F
from attnx.kernels.reference import map_features_ref

L, H = 2, 3


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(7)
    recs = synth_records(rng, 120, L, H, dtype="float16", lmin=2, lmax=16, pair_frac=0.3)
    return write_store(tmp_path_factory.mktemp("s") / "a.zarr", recs, L, H, conllu=True)


def _read_csv(path: Path) -> list[dict]:
    with open(path) as fh:
        return list(csv.DictReader(fh))


def test_feature_means_match_reference_over_store(store: Path) -> None:
    st = attnx.open_store(store)
    part = analyze_store(st, AnalyzeParams(only=("features",), max_bytes=4096))
    blk = st.read_block(0, len(st))
    ref = map_features_ref(blk.attn, blk.scale, blk.attn_offsets, blk.lengths, blk.len_a, blk.tok_offsets,
                           blk.special, blk.punct, L, H)
    means = feature_means(part)
    rows = blk.lengths.sum()
    np.testing.assert_allclose(means["entropy"], ref[..., F["entropy"]].sum(0) / rows, rtol=1e-6)
    np.testing.assert_allclose(means["cls_entropy"], ref[..., F["cls_entropy"]].sum(0) / len(st), rtol=1e-6)
    pair = blk.len_a < blk.lengths
    np.testing.assert_allclose(means["own_segment"], ref[pair][..., F["own_segment"]].sum(0) / blk.lengths[pair].sum(),
                               rtol=1e-6)
    assert part.records == len(st) and part.rows == rows


def test_partials_merge_to_the_whole_and_block_size_does_not_matter(store: Path, tmp_path: Path) -> None:
    st = attnx.open_store(store)
    params = AnalyzeParams(metrics=("cosine", "js"))
    whole = analyze_store(st, params)
    ids = np.arange(len(st))
    a = analyze_store(st, AnalyzeParams(metrics=("cosine", "js"), max_bytes=2048), records=ids[::2])
    b = analyze_store(st, params, records=ids[1::2])
    a.save(tmp_path / "a.npz")
    merged = Partial.load(tmp_path / "a.npz").merge(b)
    assert merged.records == whole.records
    np.testing.assert_array_equal(merged.pattern_counts, whole.pattern_counts)
    np.testing.assert_allclose(merged.feature_sums, whole.feature_sums, rtol=1e-10)
    for m in ("cosine", "js"):
        np.testing.assert_allclose(merged.sim_sum[m], whole.sim_sum[m], rtol=1e-10)
        assert merged.sim_count[m] == whole.sim_count[m]
    np.testing.assert_array_equal(merged.rel_correct, whole.rel_correct)


def test_write_results_public_files(store: Path, tmp_path: Path) -> None:
    st = attnx.open_store(store)
    params = AnalyzeParams(per_record=True, sample=50, seed=3)
    part = analyze_store(st, params, labels_path=tmp_path / "pattern_labels.npy")
    write_results(part, tmp_path, st, params)
    feats = _read_csv(tmp_path / "features.csv")
    assert list(feats[0]) == ["layer", "head", "cls", "sep", "sep_max", "punct", "self", "prev", "next", "distance",
                              "entropy", "cls_entropy", "max_weight", "own_segment"]
    assert len(feats) == L * H
    pats = _read_csv(tmp_path / "patterns.csv")
    for row in pats:
        assert sum(float(row[k]) for k in PATTERNS) == pytest.approx(1.0)
        assert 0.0 <= float(row["uncertain"]) <= 1.0 and 0.2 <= float(row["mean_probability"]) <= 1.0
    assert np.load(tmp_path / "similarity_cosine.npy").shape == (L * H, L * H)
    assert np.load(tmp_path / "similarity_js.npy").shape == (L * H, L * H)
    rel = _read_csv(tmp_path / "relations.csv")
    assert list(rel[0]) == ["relation", "count", "best_layer", "best_head", "accuracy", "best_offset",
                            "offset_accuracy"]
    labels = np.load(tmp_path / "pattern_labels.npy")
    assert labels.dtype == np.int8 and labels.shape == (120, L, H)
    probs = np.load(tmp_path / "pattern_probs.npy")
    assert probs.dtype == np.float16 and probs.shape == (120, L, H)
    assert np.array_equal(np.isnan(probs), labels < 0) and (probs[labels >= 0] >= 0.2).all()
    analysed = (labels[:, 0, 0] >= 0).sum()
    assert analysed == 50 and part.records == 50
    assert np.array_equal(np.bincount(labels[labels >= 0].ravel(), minlength=5), part.pattern_counts.sum((0, 1)))
    meta = json.loads((tmp_path / "params.json").read_text())
    assert meta["params"]["sample"] == 50 and meta["records"] == 50 and "pattern_model" in meta["params"]


def test_clustering_recovers_groups() -> None:
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(3, 5)) * 10
    pts = np.concatenate([c + rng.normal(size=(4, 5)) * 0.1 for c in centers])
    d = np.linalg.norm(pts[:, None] - pts[None], axis=-1)
    cl = cluster_heads(d / d.max(), cut=0.3)
    assert cl.n_clusters == 3
    assert len(set(cl.labels[:4])) == 1 and len(set(cl.labels[4:8])) == 1 and len(set(cl.labels[8:])) == 1
    assert sorted(cl.order.tolist()) == list(range(12))
    assert cl.mds.shape == (12, 2)


def test_compare_refuses_misaligned_stores(store: Path, tmp_path: Path) -> None:
    other = write_store(tmp_path / "b.zarr", synth_records(np.random.default_rng(99), 120, L, H, lmin=2, lmax=16),
                        L, H)
    with pytest.raises(StoreError, match="tokenize record"):
        compare_stores(store, other)
    r = CliRunner().invoke(compare, [str(store), str(other), "--no-progress"])
    assert r.exit_code == 1 and "tokenize record" in r.output


def test_cli_analyze_compare_report(store: Path, tmp_path: Path) -> None:
    out = tmp_path / "an"
    r = CliRunner().invoke(analyze, [str(store), "-o", str(out), "--only", "features,patterns,similarity",
                                     "--metric", "cosine", "--per-record", "--no-progress"])
    assert r.exit_code == 0, r.output
    assert "analysed 120 records" in r.output
    assert (out / "features.csv").exists() and (out / "pattern_labels.npy").exists()
    assert not (out / "similarity_js.npy").exists()
    r = CliRunner().invoke(compare, [str(store), str(store), "-o", str(out), "--no-progress"])
    assert r.exit_code == 0, r.output
    cos = [float(row["cosine"]) for row in _read_csv(out / "compare.csv")]
    assert min(cos) == pytest.approx(1.0, abs=1e-6)
    r = CliRunner().invoke(report, [str(out), "-o", str(tmp_path / "rep")])
    assert r.exit_code == 0, r.output
    pngs = {p.name for p in (tmp_path / "rep").glob("*.png")}
    assert {"feature_cls.png", "patterns_per_head.png", "patterns_per_layer.png", "similarity_cosine.png",
            "compare.png"} <= pngs


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    r = CliRunner().invoke(analyze, [str(tmp_path / "empty"), "--no-progress"])
    assert r.exit_code == 1 and "no attnx store" in r.output
    r = CliRunner().invoke(analyze, [str(tmp_path / "empty"), "--metric", "euclid"])
    assert r.exit_code == 2 and "choose metrics" in r.output
    r = CliRunner().invoke(report, [str(tmp_path / "empty"), "-o", str(tmp_path / "r")])
    assert r.exit_code == 1 and "no analysis results" in r.output


def test_stats_only_store_gives_the_same_features_and_patterns(store: Path, tmp_path: Path) -> None:
    """A --stats-only store (per-map feature row sums instead of maps) analyses like the maps it came from."""
    from attnx.kernels.names import MAP_FEATURES
    from attnx.store import Payload, StoredBatch, StoreWriter

    st = attnx.open_store(store)
    blk = st.read_block(0, len(st))
    sums = map_features_ref(blk.attn, blk.scale, blk.attn_offsets, blk.lengths, blk.len_a, blk.tok_offsets,
                            blk.special, blk.punct, L, H)
    names = list(MAP_FEATURES)[::-1]  # stored in another order: matched by name
    meta = {"layers": st.layers, "heads": st.heads, "model": {"name": "synthetic", "layers": L, "heads": H}}
    w = StoreWriter.create(tmp_path / "stats.zarr", meta=meta, vocab=[f"t{k}" for k in range(2000)],
                           dtype="float32", codec="zstd", attn_chunk_elems=4096, record_chunk=64, token_chunk=1024,
                           payload=Payload.stats(names))
    w.append(StoredBatch(attn=sums[..., ::-1].astype(np.float32).reshape(-1), input_id=blk.record_ids,
                         length=blk.lengths, len_a=blk.len_a, line=blk.record_ids + 1,
                         truncated=np.zeros(len(blk), bool),
                         tokens={"ids": blk.token_ids, "segment": blk.segment, "special": blk.special,
                                 "punct": blk.punct, "word": blk.word}))
    w.finish()
    maps_part = analyze_store(st, AnalyzeParams(only=("features", "patterns")))
    stats_part = analyze_store(tmp_path / "stats.zarr", AnalyzeParams())
    np.testing.assert_allclose(stats_part.feature_sums, maps_part.feature_sums, rtol=1e-5)
    assert np.abs(stats_part.pattern_counts - maps_part.pattern_counts).sum() <= 2  # float32 ties at thresholds
    assert not stats_part.sim_sum and stats_part.rel_count is None
    with pytest.raises(AttnxError, match="stats-only"):
        analyze_store(tmp_path / "stats.zarr", AnalyzeParams(only=("similarity",)))
