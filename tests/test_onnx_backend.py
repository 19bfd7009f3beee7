"""The onnxruntime backend against transformers' eager attention (fp32) and against the torch backend's store.

Each reference record runs alone (no padding); the backend runs singles and pairs of mixed lengths padded
in one batch, so these tests also prove that padding never leaks into the maps. Exports go to the session's
``ATTNX_CACHE`` (tests/conftest.py); the MiniLM export (about 5 s) is made once and reused by the CLI test.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install 'attnx[onnx]')")
pytest.importorskip("onnx", reason="onnx is not installed (pip install 'attnx[onnx]')")

from click.testing import CliRunner  # noqa: E402
from helpers.paths import SAMPLE  # noqa: E402

from attnx.cli.main import main  # noqa: E402
from attnx.engine.backends.base import collate, packed_offsets  # noqa: E402
from attnx.engine.backends.onnx_backend import OnnxBackend, pack_padded  # noqa: E402
from attnx.engine.onnx_export import cache_dir, export_path  # noqa: E402
from attnx.store import open_store  # noqa: E402

TOL = 1e-5


def records() -> list[tuple[str, str | None]]:
    singles = (SAMPLE / "sample.txt").read_text(encoding="utf-8").splitlines()[:8]
    pairs = [tuple(x.split("\t")) for x in (SAMPLE / "sample_pairs.tsv").read_text(encoding="utf-8").splitlines()[:5]]
    out: list[tuple[str, str | None]] = [(s, None) for s in singles] + pairs
    out.insert(3, ("Hi.", None))  # a very short one between longer ones
    return out


def token_batch(tokenizer, recs):
    enc = [tokenizer(a, b) for a, b in recs]
    ids = np.concatenate([np.asarray(e["input_ids"], np.int32) for e in enc])
    seg = np.concatenate([np.asarray(e["token_type_ids"], np.int8) for e in enc])
    offsets = np.concatenate([[0], np.cumsum([len(e["input_ids"]) for e in enc])]).astype(np.int64)
    return collate(ids, offsets, seg, np.arange(len(recs)), tokenizer.pad_token_id or 0)


def reference(model, tokenizer, a: str, b: str | None) -> np.ndarray:
    """(layers, heads, l, l) from transformers' eager attention, the record alone."""
    enc = tokenizer(a, b, return_tensors="pt")
    with torch.no_grad():
        out = model(**enc, output_attentions=True)
    return torch.stack(out.attentions)[:, 0].numpy()


def check_packed(packed, batch, recs, eager, tokenizer, layers, heads) -> float:
    offsets = packed_offsets(batch.lengths, len(layers), len(heads))
    assert packed.attn.shape == (offsets[-1],)
    worst = 0.0
    for i, (a, b) in enumerate(recs):
        l = int(batch.lengths[i])
        got = packed.attn[offsets[i]:offsets[i + 1]].reshape(len(layers), len(heads), l, l)
        ref = reference(eager, tokenizer, a, b)[layers][:, heads]
        worst = max(worst, float(np.abs(got.astype(np.float64) - ref).max()))
    return worst


@pytest.fixture(scope="module")
def tiny():
    from transformers import BertModel

    from attnx.engine.model import load_model

    loaded = load_model("random-bert-tiny", seed=0)
    config = loaded.model.config.__class__(**loaded.model.config.to_dict())
    config._attn_implementation = "eager"
    eager = BertModel(config).eval()
    eager.load_state_dict(loaded.model.state_dict())
    return loaded, eager


def test_minilm_parity_singles_pairs_mixed(minilm, eager_minilm):
    recs = records()
    batch = token_batch(minilm.tokenizer, recs)
    assert len(set(batch.lengths.tolist())) > 5  # mixed lengths, padded in one batch
    layers, heads = list(range(minilm.num_layers)), list(range(minilm.num_heads))
    backend = OnnxBackend(minilm, layers, heads, "float32")
    worst = check_packed(backend.submit(batch).result(), batch, recs, eager_minilm, minilm.tokenizer, layers, heads)
    assert worst <= TOL, f"max abs error {worst:.3g}"
    assert OnnxBackend(minilm, layers, heads, "float32").export_cached


@pytest.mark.parametrize("layers,heads", [([0, 1], [0, 1, 2, 3]), ([1], [0, 2])])
def test_tiny_parity_kept_layers_heads(tiny, layers, heads):
    loaded, eager = tiny
    recs = records()
    batch = token_batch(loaded.tokenizer, recs)
    backend = OnnxBackend(loaded, layers, heads, "float32")
    worst = check_packed(backend.submit(batch).result(), batch, recs, eager, loaded.tokenizer, layers, heads)
    assert worst <= TOL, f"max abs error {worst:.3g}"


def test_tiny_store_dtypes_match_torch_backend(tiny):
    from attnx.engine.backends.torch_backend import TorchBackend

    loaded, _ = tiny
    batch = token_batch(loaded.tokenizer, records())
    for dtype, tol in (("float16", 4.9e-4), ("uint8", 1), ("q12", 1), ("q16", 1)):  # codes within one step
        got = OnnxBackend(loaded, [0, 1], [1, 3], dtype).submit(batch).result().attn
        want = TorchBackend(loaded, [0, 1], [1, 3], dtype).submit(batch).result().attn
        assert got.dtype == want.dtype and got.shape == want.shape
        assert np.abs(got.astype(np.float64) - want.astype(np.float64)).max() <= tol


def test_pack_padded_layout():
    rng = np.random.default_rng(0)
    attn = rng.random((2, 3, 4, 5, 5)).astype(np.float32)  # (layers, batch, heads, T, T)
    lengths = np.array([5, 2, 3], np.int32)
    packed = pack_padded(attn, lengths)
    offsets = packed_offsets(lengths, 2, 4)
    for b, l in enumerate(lengths):
        np.testing.assert_array_equal(packed[offsets[b]:offsets[b + 1]].reshape(2, 4, l, l), attn[:, b, :, :l, :l])


def test_cache_location(tiny, tmp_path, monkeypatch):
    """Exports go to the user's cache folder, never into the model's folder, even a writable one."""
    loaded, _ = tiny
    assert str(cache_dir(loaded)).startswith(os.environ["ATTNX_CACHE"])  # random model: no directory
    model_dir = tmp_path / "my-model"
    model_dir.mkdir()
    mine = dataclasses.replace(loaded, path=str(model_dir))
    assert cache_dir(mine) == Path(os.environ["ATTNX_CACHE"]) / "onnx"
    assert not export_path(mine, [0], [0], "float32").is_relative_to(model_dir)
    monkeypatch.delenv("ATTNX_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir(mine) == tmp_path / "xdg" / "attnx" / "onnx"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir(mine) == tmp_path / "home" / ".cache" / "attnx" / "onnx"
    a, b = export_path(loaded, [0], [0], "float32"), export_path(loaded, [0], [1], "float32")
    assert a != b and a.suffix == ".onnx"


def test_tampered_cached_export_is_exported_again(tiny):
    """The cache is keyed by the settings and verified by the exported file's sha256: a changed file is
    never used (once, a tampered export ran silently, 1.0 away from the torch maps)."""
    from attnx.engine.onnx_export import ensure_onnx

    loaded, _ = tiny
    path, _ = ensure_onnx(loaded, [0], [0, 1], "float32")
    good = path.read_bytes()
    assert ensure_onnx(loaded, [0], [0, 1], "float32") == (path, True)
    tampered = good[:-64] + bytes(64)
    path.write_bytes(tampered)  # same name, other bytes
    assert ensure_onnx(loaded, [0], [0, 1], "float32") == (path, False)  # detected, exported again
    assert path.read_bytes() != tampered and ensure_onnx(loaded, [0], [0, 1], "float32") == (path, True)
    path.with_suffix(".json").unlink()  # no record of what the file is: not trusted either
    assert ensure_onnx(loaded, [0], [0, 1], "float32")[1] is False


def test_cli_onnx_store_equals_torch_store(tmp_path):
    singles = (SAMPLE / "sample.txt").read_text(encoding="utf-8").splitlines()[:30]
    src = tmp_path / "s.txt"
    src.write_text("\n".join(singles) + "\n", encoding="utf-8")
    stores = {}
    for backend in ("torch", "onnx"):
        out = tmp_path / f"{backend}.zarr"
        result = CliRunner().invoke(main, ["extract", str(src), "-o", str(out), "--dtype", "float32",
                                           "--device", "cpu", "--backend", backend, "-q"])
        assert result.exit_code == 0, result.output
        stores[backend] = open_store(out)
    a, b = stores["torch"], stores["onnx"]
    assert len(a) == len(b) == len(singles)
    np.testing.assert_array_equal(a.lengths, b.lengths)
    worst = max(float(np.abs(a.attention(i) - b.attention(i)).max()) for i in range(len(a)))
    assert worst <= TOL, f"onnx store vs torch store: max abs error {worst:.3g}"
    assert b.attrs["options"]["backend"] == "onnx"


def test_session_keeps_no_memory_pattern_per_shape(tiny):
    """Length-sorted batches bring a new (batch, length) shape all run long; with onnxruntime's memory patterns
    (planned and kept per shape) the 10^6-sentence soak's RSS grew with every rare shape it met (1.44 -> 1.84 GB,
    benchmarks/RESULTS.md). A growth test would need minutes of MiniLM batches and a quiet machine, so this pins
    the setting that removes it; the runs below meet several shapes and stay right."""
    loaded, eager = tiny
    backend = OnnxBackend(loaded, [0, 1], [0, 1, 2, 3], "float32")
    assert backend.session.get_session_options().enable_mem_pattern is False
    recs = records()
    for k in (3, 5, 8):  # three batch shapes through one session
        batch = token_batch(loaded.tokenizer, recs[:k])
        worst = check_packed(backend.submit(batch).result(), batch, recs[:k], eager, loaded.tokenizer, [0, 1],
                             [0, 1, 2, 3])
        assert worst <= TOL
