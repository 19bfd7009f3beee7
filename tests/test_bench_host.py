"""``attnx bench host``: the replay backend writes a real, verifiable store with one real map per record of
the record's own length, and the run summary gives every stage's core-seconds per GB and the projection."""

from __future__ import annotations

import json

import numpy as np
from click.testing import CliRunner
from helpers.paths import SAMPLE

from attnx import verify
from attnx.bench_host import STAGES, projection
from attnx.cli.main import main
from attnx.engine.backends.replay_backend import replay_map
from attnx.engine.extract import ExtractOptions, extract
from attnx.store import open_store

SAMPLED = 10


def test_bench_host_writes_real_maps_of_each_length(tmp_path):
    lines = (SAMPLE / "sample.txt").read_text(encoding="utf-8").splitlines()[:40]
    path = tmp_path / "c.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "host.zarr"
    res = CliRunner().invoke(
        main,
        ["bench", "host", str(path), "-o", str(out), "--sample", str(SAMPLED), "--io-threads", "2", "--json"],
    )
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output)
    assert summary["records"] == 40 and summary["io_threads"] == 2 and summary["sampled_records"] == SAMPLED
    assert set(summary["core_s_per_gb"]) == set(STAGES) and summary["core_s_per_gb_host"] > 0
    assert summary["sentences_per_s"] > 0 and summary["raw_gb_per_s"] > 0

    verify(out)  # raises on any broken invariant
    store = open_store(out)
    assert len(store) == 40 and store.complete and store.attrs["options"]["backend"] == "replay"

    # the same input through the real model: the reference maps
    ref_out = tmp_path / "ref.zarr"
    extract(ExtractOptions(input=str(path), output=str(ref_out), device="cpu", backend="torch"))
    ref = open_store(ref_out)
    np.testing.assert_array_equal(store.lengths, ref.lengths)  # every record keeps its own length
    sampled: dict[int, list[np.ndarray]] = {}
    for i in range(SAMPLED):  # the replay's sample: the input's first records, as the real model maps them
        sampled.setdefault(int(ref.lengths[i]), []).append(ref.attention(i).reshape(-1, *ref.attention(i).shape[2:]))
    cropped = 0
    for i in range(40):
        a = store.attention(i)
        l = int(ref.lengths[i])
        assert a.shape == (6, 12, l, l)
        np.testing.assert_allclose(a.sum(-1), 1.0, atol=l * 2.5e-4)  # rows are distributions
        assert a.reshape(72, -1).std(-1).min() > 1e-3 or l <= 2  # no constant maps
        if l in sampled:  # a real map of a sampled record of this very length
            assert any(np.abs(a.reshape(72, l, l) - m).max() < 2e-3 for m in sampled[l])
        elif any(k > l for k in sampled):  # a longer sampled record's real map, cropped and renormalised
            cropped += 1
            want = [replay_map(sampled, l, turn) for turn in range(8)]
            assert any(np.abs(a.reshape(72, l, l) - m).max() < 3e-3 for m in want)
    assert cropped > 0  # the test input has lengths the sample lacks


def test_replay_map_resamples_past_the_longest_sample():
    rng = np.random.default_rng(0)
    m = rng.random((2, 5, 5)).astype(np.float32)
    m /= m.sum(-1, keepdims=True)
    out = replay_map({5: [m]}, 9, 0)
    assert out.shape == (2, 9, 9)
    np.testing.assert_allclose(out.sum(-1), 1.0, rtol=1e-6)
    assert out.std() > 0
    np.testing.assert_allclose(replay_map({5: [m]}, 3, 0).sum(-1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(replay_map({5: [m]}, 5, 0), m)


def test_projection_formula():
    per_gb = dict.fromkeys(STAGES, 1.0)
    p = projection(per_gb, bytes_per_sentence=200e3)
    assert p["cores"]["10000"] == 10000 * 200e3 / 1e9 * 5  # 2 GB/s x 5 core-s per GB
    assert p["single_thread_caps_sentences_per_s"]["writer"] == 1e9 / 200e3
