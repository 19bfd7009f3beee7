"""Attention rollout: the numba kernel against the numpy reference, on random and awkward records and
through a store written with the public writer API."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from helpers.synth import encode, random_maps, synth_records, write_store

from attnx.analysis.rollout import load_rollout, store_rollout
from attnx.cli.ablate import rollout_cmd
from attnx.kernels.rollout import rollout_flat, rollout_reference
from attnx.store import open_store


def _flat(maps_list, dtype):
    parts = [encode(m.reshape(-1), dtype) for m in maps_list]
    offsets = np.concatenate([[0], np.cumsum([len(p) for p in parts])]).astype(np.int64)
    return np.concatenate(parts), offsets


@pytest.mark.parametrize("dtype", ["float32", "float16", "uint8"])
def test_kernel_matches_reference(dtype):
    rng = np.random.default_rng(0)
    layers, heads = 3, 4
    lengths = [2, 7, 1, 13, 5, 2, 9]
    maps = [random_maps(rng, layers * heads, l).reshape(layers, heads, l, l) for l in lengths]
    maps[1][:, :, :, 0] = 1.0  # all mass on one token
    maps[1][:, :, :, 1:] = 0.0
    attn, offsets = _flat(maps, dtype)
    scale = 1 / 255 if dtype == "uint8" else 1.0
    values, out_offsets = rollout_flat(attn, offsets, np.array(lengths), layers, heads, scale)
    assert values.dtype == np.float32 and out_offsets[-1] == sum(l * l for l in lengths)
    for k, l in enumerate(lengths):
        decoded = attn[offsets[k] : offsets[k + 1]].astype(np.float64) * scale
        ref = rollout_reference(decoded.reshape(layers, heads, l, l))
        got = values[out_offsets[k] : out_offsets[k + 1]].reshape(l, l)
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)
        if dtype == "float32":
            np.testing.assert_allclose(got.sum(1), 1.0, atol=1e-5)


def test_reference_by_hand():
    a = np.array([[0.2, 0.8], [0.6, 0.4]])
    b = np.array([[1.0, 0.0], [0.5, 0.5]])
    maps = np.stack([np.stack([a, b]), np.stack([b, b])])  # (2 layers, 2 heads, 2, 2)
    eye = np.eye(2)
    first = 0.5 * (a + b) / 2 + 0.5 * eye
    second = 0.5 * b + 0.5 * eye
    np.testing.assert_allclose(rollout_reference(maps), second @ first)


def test_store_rollout_and_cli(tmp_path):
    rng = np.random.default_rng(1)
    recs = synth_records(rng, 40, 2, 3, dtype="float16", lmin=2, lmax=12)
    path = write_store(tmp_path / "s.zarr", recs, 2, 3, dtype="float16", batch=16)
    summary = store_rollout(path, max_bytes=4096)
    assert summary["records"] == 40
    store = open_store(path)
    assert store.derived_names() == ["rollout"]
    for i in (0, 7, 39):
        ref = rollout_reference(store.attention(i))
        np.testing.assert_allclose(load_rollout(path, i), ref, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(store.derived("rollout", i), ref, rtol=1e-5, atol=1e-6)
    result = CliRunner().invoke(rollout_cmd, [str(path), "--json"])
    assert result.exit_code == 0, result.output
    assert '"records": 40' in result.output
    bad = CliRunner().invoke(rollout_cmd, [str(tmp_path)])
    assert bad.exit_code != 0 and "no attnx store" in bad.output
