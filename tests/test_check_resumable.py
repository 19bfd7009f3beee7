"""Direct tests of ``check_resumable``: which differences between a store and a new run it refuses, and how it
says so. The store is a small synthetic one written through the store API with the metadata extract writes."""

from __future__ import annotations

import copy

import pytest
from helpers.stores import make_batches

from attnx.engine.run import check_resumable
from attnx.errors import StoreError
from attnx.store import StoreWriter, open_store

OPTIONS = {
    "format": "text",
    "max_length": 512,
    "truncate": True,
    "compute_dtype": "float32",
    "text_field": "text",
    "pair_field": "text_b",
    "backend": "torch",
    "stats_only": False,
}
META = {
    "model": {"name": "synthetic", "weights_sha256": "ab" * 32, "layers": 2, "heads": 3},
    "layers": [0, 1],
    "heads": [0, 1, 2],
    "options": OPTIONS,
}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("resumable") / "s.zarr"
    w = StoreWriter.create(path, META, [f"t{i}" for i in range(50)], "float16", "blosc-zstd", attn_chunk_elems=997,
                           record_chunk=7, token_chunk=13)
    w.append(make_batches(3, 1, 4, "float16")[0])
    w.close()  # interrupted: not finished, so a run may resume it
    return open_store(path)


def refusal(store, meta: dict, dtype: str = "float16", codec: str = "blosc-zstd") -> str:  # noqa: ANN001
    with pytest.raises(StoreError) as info:
        check_resumable(store, meta, dtype, codec)
    return str(info.value)


def test_same_model_options_dtype_and_codec_resume(store):
    assert not store.complete
    check_resumable(store, copy.deepcopy(META), "float16", "blosc-zstd")  # no error


def test_other_weights_refused_naming_the_store_model(store):
    meta = copy.deepcopy(META)
    meta["model"]["weights_sha256"] = "cd" * 32
    msg = refusal(store, meta)
    assert f"{store.path}: exists with a different model (store: synthetic, weights {'ab' * 6})" in msg
    assert msg.endswith(" - use another output path or --overwrite")


def test_same_name_other_weights_is_still_refused(store):
    meta = copy.deepcopy(META)
    meta["model"]["weights_sha256"] = "ab" * 31 + "ac"  # only the digest differs
    assert "different model" in refusal(store, meta)


@pytest.mark.parametrize(
    ("key", "value", "shown"),
    [
        ("layers", [0], "layers (store: [0, 1], asked: [0])"),
        ("heads", [0, 1, 2, 3], "heads (store: [0, 1, 2], asked: [0, 1, 2, 3])"),
    ],
)
def test_other_layers_or_heads_refused(store, key, value, shown):
    meta = copy.deepcopy(META)
    meta[key] = value
    assert f"exists with a different {shown}" in refusal(store, meta)


def test_other_stored_dtype_refused(store):
    assert "different dtype (store: float16, asked: uint8)" in refusal(store, copy.deepcopy(META), dtype="uint8")


def test_other_codec_refused(store):
    assert "different codec (store: blosc-zstd, asked: zstd)" in refusal(store, copy.deepcopy(META), codec="zstd")


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("format", "jsonl"),
        ("max_length", 128),
        ("truncate", False),
        ("compute_dtype", "bfloat16"),
        ("text_field", "sentence"),
        ("pair_field", None),
        ("backend", "onnx"),
        ("stats_only", True),
    ],
)
def test_every_option_that_changes_the_maps_is_refused(store, key, value):
    meta = copy.deepcopy(META)
    meta["options"][key] = value
    assert f"different {key} (store: {OPTIONS[key]}, asked: {value})" in refusal(store, meta)


def test_all_differences_named_in_one_message(store):
    meta = copy.deepcopy(META)
    meta["model"]["weights_sha256"] = "00" * 32
    meta["layers"] = [1]
    meta["options"]["max_length"] = 64
    msg = refusal(store, meta, dtype="q10")
    assert msg.count("; ") == 3
    for part in ("different model (store: synthetic", "layers (store: [0, 1], asked: [1])",
                 "dtype (store: float16, asked: q10)", "max_length (store: 512, asked: 64)"):
        assert part in msg
