"""--stats-only: features computed on the device equal the kernels' reference on a full float32 dump."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers.paths import SAMPLE

from attnx.engine.extract import ExtractOptions, extract
from attnx.engine.stats import batch_features
from attnx.kernels.names import MAP_FEATURES
from attnx.kernels.reference import map_features_ref
from attnx.store import open_store


def test_batch_features_match_reference_on_padded_batch():
    rng = np.random.default_rng(0)
    b, h, t = 6, 3, 9
    lengths = np.array([9, 2, 5, 7, 3, 1 + 1])
    len_a = np.array([4, 2, 5, 3, 3, 2])
    probs = np.zeros((b, h, t, t), np.float32)
    special = np.zeros((b, t), bool)
    punct = np.zeros((b, t), bool)
    for k, l in enumerate(lengths):
        x = rng.random((h, l, l)) ** 4
        probs[k, :, :l, :l] = x / x.sum(-1, keepdims=True)
        probs[k, :, l:, :] = 1.0 / t  # junk in padded query rows must not count
        special[k, [0, len_a[k] - 1, l - 1]] = True
        punct[k, 1 : l - 1] = rng.random(l - 2) < 0.3
    sep = special & (np.arange(t) > 0)
    got = batch_features(
        torch.from_numpy(probs),
        torch.from_numpy(lengths),
        torch.from_numpy(len_a),
        torch.from_numpy(sep),
        torch.from_numpy(punct & ~special),
    ).numpy()
    flat = np.concatenate([probs[k, :, :l, :l].ravel() for k, l in enumerate(lengths)])
    offsets = np.concatenate([[0], np.cumsum(h * lengths**2)])
    tok = np.concatenate([[0], np.cumsum(lengths)])
    ref = map_features_ref(
        flat,
        1.0,
        offsets,
        lengths,
        len_a,
        tok,
        np.concatenate([special[k, :l] for k, l in enumerate(lengths)]),
        np.concatenate([punct[k, :l] for k, l in enumerate(lengths)]),
        1,
        h,
    )[:, 0]
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=2e-5)


@pytest.mark.parametrize("source", ["sample.txt", "sample_pairs.tsv"])
def test_stats_only_store_equals_features_of_full_dump(tmp_path, source):
    lines = (SAMPLE / source).read_text(encoding="utf-8").splitlines()[:40]
    src = tmp_path / source
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    extract(
        ExtractOptions(
            input=str(src),
            output=str(tmp_path / "full.zarr"),
            dtype="float32",
            device="cpu",
            layers=(0, 3, 5),
            heads=(1, 4, 11),
        )
    )
    extract(
        ExtractOptions(
            input=str(src),
            output=str(tmp_path / "stats.zarr"),
            device="cpu",
            stats_only=True,
            layers=(0, 3, 5),
            heads=(1, 4, 11),
        )
    )
    full, stats = open_store(tmp_path / "full.zarr"), open_store(tmp_path / "stats.zarr")
    assert stats.payload == "features" and stats.features == list(MAP_FEATURES)
    with pytest.raises(Exception, match="holds features, not maps"):
        stats.attention(0)
    for block in full.blocks():
        ref = map_features_ref(
            block.attn,
            block.scale,
            block.attn_offsets,
            block.lengths,
            block.len_a,
            block.tok_offsets,
            block.special,
            block.punct,
            full.n_layers,
            full.n_heads,
        )
        for k, rid in enumerate(block.record_ids):
            np.testing.assert_allclose(stats.record_features(int(rid)), ref[k], rtol=1e-4, atol=1e-4)
    assert stats.nbytes_stored() < full.nbytes_stored()
    again = extract(
        ExtractOptions(
            input=str(src),
            output=str(tmp_path / "stats.zarr"),
            device="cpu",
            stats_only=True,
            layers=(0, 3, 5),
            heads=(1, 4, 11),
        )
    )
    assert again.status == "already complete"


def test_analyze_on_stats_only_store_equals_analyze_on_full_dump(tmp_path):
    """The issue's contract: `extract --stats-only` + analyze == analyze of a full dump (features, patterns)."""
    from attnx.analysis import api

    lines = (SAMPLE / "sample_pairs.tsv").read_text(encoding="utf-8").splitlines()[:30]
    lines += [x + "\t" for x in (SAMPLE / "sample.txt").read_text(encoding="utf-8").splitlines()[:30]]
    src = tmp_path / "mixed.tsv"
    src.write_text("\n".join(x.rstrip("\t") for x in lines) + "\n", encoding="utf-8")
    extract(ExtractOptions(input=str(src), output=str(tmp_path / "full.zarr"), dtype="float32", device="cpu"))
    extract(ExtractOptions(input=str(src), output=str(tmp_path / "stats.zarr"), device="cpu", stats_only=True))
    full = api.features(tmp_path / "full.zarr")
    stats = api.features(tmp_path / "stats.zarr")
    assert set(full) == set(stats)
    for name in full:
        np.testing.assert_allclose(stats[name], full[name], rtol=2e-4, atol=2e-5, err_msg=name)
    np.testing.assert_allclose(api.patterns(tmp_path / "stats.zarr"), api.patterns(tmp_path / "full.zarr"), atol=0.02)


def test_compare_and_rollout_refuse_stats_only_stores(tmp_path):
    """compare exited 0 with NaN cosines (full, stats) and segfaulted (stats first); rollout raised a traceback."""
    from click.testing import CliRunner

    from attnx.analysis import api
    from attnx.cli.main import main
    from attnx.errors import StoreError

    src = tmp_path / "in.txt"
    src.write_text("\n".join((SAMPLE / "sample.txt").read_text(encoding="utf-8").splitlines()[:8]) + "\n")
    for name, stats_only in (("full.zarr", False), ("stats.zarr", True)):
        extract(ExtractOptions(input=str(src), output=str(tmp_path / name), model="random-bert-tiny", device="cpu",
                               backend="torch", stats_only=stats_only))
    full, stats = str(tmp_path / "full.zarr"), str(tmp_path / "stats.zarr")
    runner = CliRunner()
    for a, b in ((full, stats), (stats, full), (stats, stats)):
        with pytest.raises(StoreError, match="stats-only"):
            api.compare(a, b)
        result = runner.invoke(main, ["compare", a, b, "-o", str(tmp_path / "cmp"), "--no-progress"])
        assert result.exit_code == 1 and "--stats-only" in result.output, result.output
        assert result.output.count("\n") == 1 and not (tmp_path / "cmp" / "compare.csv").exists()
    result = runner.invoke(main, ["rollout", stats])
    assert result.exit_code == 1 and "--stats-only" in result.output and "Traceback" not in result.output
    assert open_store(stats).derived_names() == []
