"""Stored values are checked on every read: crafted-but-consistent stores (NaN, negative weights, rows that do not
sum to 1, out-of-range word arrays, relabelled heads, huge input ids) are one-line errors naming the record, from
the API and from every command, never results."""

from __future__ import annotations

import shutil
import tracemalloc
from pathlib import Path

import icechunk
import numpy as np
import pytest
import zarr
from click.testing import CliRunner
from helpers.synth import synth_records, write_store

from attnx.cli.main import main
from attnx.errors import StoreError
from attnx.store import StoreLocation, open_store
from attnx.store.checks import BAD_SUM, OUT_OF_RANGE, first_bad_map, first_bad_map_reference
from attnx.store.validate import seal

LAYERS, HEADS = 2, 3


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("values")
    rng = np.random.default_rng(5)
    out = {}
    for dtype in ("float16", "float32", "uint8", "q10"):
        recs = synth_records(rng, 40, LAYERS, HEADS, dtype="float32" if dtype == "q10" else dtype, lmin=3, lmax=12)
        if dtype == "q10":
            for r in recs:
                r["attn"] = np.round(r["attn"].astype(np.float64) * 1023).astype(np.uint16)
        out[dtype] = write_store(d / f"{dtype}.zarr", recs, LAYERS, HEADS, dtype=dtype, conllu=True, batch=16)
    return out


def _craft(src: Path, dst: Path, edit) -> Path:  # noqa: ANN001
    shutil.copytree(src, dst)
    repo = icechunk.Repository.open(StoreLocation.parse(dst).storage())
    session = repo.writable_session("main")
    with zarr.config.set({"array.write_empty_chunks": True}):
        edit(zarr.open_group(store=session.store, mode="r+"))
    session.commit("crafted")
    return dst


def _record_span(g: zarr.Group, record: int) -> tuple[int, int, int]:
    """(position, first payload element, l) of input record ``record``."""
    ids = np.asarray(g["rec/input_id"][:])
    p = int(np.flatnonzero(ids == record)[0])
    return p, int(g["rec/attn_start"][p]), int(g["rec/length"][p])


def _edit_map(record: int, fn):  # noqa: ANN001, ANN202
    """Apply ``fn(row0)`` to row 0 of map 0 of ``record`` (in stored units)."""

    def edit(g: zarr.Group) -> None:
        _, a0, l = _record_span(g, record)
        attn = g["attn"]
        row = np.asarray(attn[a0 : a0 + l])
        attn[a0 : a0 + l] = fn(row.copy())

    return edit


def _neg(row: np.ndarray) -> np.ndarray:  # one weight -0.25, its neighbour +0.25: the row still sums to 1
    row[0] -= np.float32(0.25)
    row[1] += np.float32(0.25)
    return row


def _set_word_array(name: str, record: int, value: int):  # noqa: ANN202
    def edit(g: zarr.Group) -> None:
        p, _, _ = _record_span(g, record)
        start = int(g["rec/word_start" if name.startswith("words/") else "rec/tok_start"][p])
        g[name][start + 1] = value

    return edit


CASES = {
    "nan": (_edit_map(10, lambda r: np.where(np.arange(len(r)) == 0, np.nan, r).astype(r.dtype)), "not a number"),
    "negative weight summing to 1": (_edit_map(10, _neg), "negative"),
    "row sums to 0.5": (_edit_map(10, lambda r: (r.astype(np.float64) / 2).astype(r.dtype)), "sums to 0\\.[45]"),
    "deprel 30000": (_set_word_array("words/deprel", 10, 30000), "relation"),
    "deprel -1": (_set_word_array("words/deprel", 10, -1), "relation"),
    "deprel one past": (_set_word_array("words/deprel", 10, 4), "relation"),
    "head 10^6": (_set_word_array("words/head", 10, 10**6), "head"),
    "tok/word 10^6": (_set_word_array("tok/word", 10, 10**6), "word index"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_crafted_values_are_refused_naming_the_record(stores: dict[str, Path], tmp_path: Path, case: str) -> None:
    edit, expected = CASES[case]
    crafted = _craft(stores["float16"], tmp_path / "c.zarr", edit)
    store = open_store(crafted)
    with pytest.raises(StoreError, match=f"record 10: .*{expected}") as info:
        for _ in store.blocks(max_bytes=1 << 10):
            pass
    assert "\n" not in str(info.value)
    with pytest.raises(StoreError, match="record 10"):
        store.attention(10) if "word" not in case and "deprel" not in case and "head" not in case else (
            store.dependencies(10),
            store.word_ids(10),
        )
    runner = CliRunner()
    for args in (
        ["verify", str(crafted)],
        ["analyze", str(crafted), "-o", str(tmp_path / "an")],
        ["show", str(crafted), "10", "-o", str(tmp_path / "m.png")],
    ):
        result = runner.invoke(main, args)  # show checks the whole record it draws, word arrays included
        assert result.exit_code == 1, (args, result.output)
        last = result.output.rstrip("\n").split("\n")[-1]
        assert last.startswith("Error: ") and "record 10" in last and "Traceback" not in result.output, result.output


@pytest.mark.parametrize("dtype", ["float16", "float32", "uint8", "q10"])
def test_valid_stores_of_every_dtype_pass_the_value_checks(stores: dict[str, Path], dtype: str) -> None:
    store = open_store(stores[dtype])
    assert sum(len(b) for b in store.blocks(max_bytes=1 << 12)) == len(store)
    for i in range(len(store)):
        store.attention(i)
        store.dependencies(i)


# one element of a good block set to one of these (bad, or merely different) stored values
BAD_VALUES = {
    "float16": [np.nan, -0.0, -1e-4, 1.5, np.inf, 0.3, 0.0],
    "float32": [np.nan, -0.0, -1e-7, 1.0 + 1e-6, -np.inf, 0.3, 0.0],
    "uint8": [0, 255, 128, 3],
    "q10": [1024, 65535, 0, 1023, 500],
}


def damaged(attn: np.ndarray, dtype: str, n: int = 60):  # noqa: ANN201 - Iterator[np.ndarray]
    """``n`` seeded copies of ``attn``, each with one element set to one of ``BAD_VALUES[dtype]``."""
    rng = np.random.default_rng(1)
    bad_values = BAD_VALUES[dtype]
    for _ in range(n):
        out = attn.copy()
        out[int(rng.integers(len(out)))] = bad_values[int(rng.integers(len(bad_values)))]
        yield out


@pytest.mark.parametrize("dtype", ["float16", "float32", "uint8", "q10"])
def test_map_check_kernel_matches_its_numpy_reference(stores: dict[str, Path], dtype: str) -> None:
    """Seeded random damage (one element set to a bad or merely different value) anywhere in a block: the numba
    kernel and the numpy reference name the same record and the same reason."""
    block = next(open_store(stores[dtype]).blocks(max_bytes=1 << 30))
    n_maps = LAYERS * HEADS
    assert first_bad_map(block.attn, block.attn_offsets, block.lengths, n_maps, dtype)[0] == -1
    seen = set()
    for attn in damaged(block.attn, dtype):
        got = first_bad_map(attn, block.attn_offsets, block.lengths, n_maps, dtype)
        want = first_bad_map_reference(attn, block.attn_offsets, block.lengths, n_maps, dtype)
        assert got[:2] == want[:2]
        assert got[2] == pytest.approx(want[2], abs=1e-3, nan_ok=True)
        seen.add(got[1])
    assert {OUT_OF_RANGE, BAD_SUM} <= seen or dtype == "uint8"  # uint8 has no out-of-range code


@pytest.mark.parametrize("dtype", ["float16", "float32", "uint8", "q10"])
def test_feature_kernel_flags_what_the_map_check_refuses(stores: dict[str, Path], dtype: str) -> None:
    """``analyze`` checks the maps inside its feature kernel (``check_maps=False`` blocks): on the same seeded
    damage as above, the kernel's first flagged record and reason are the numpy reference's, its features are
    those of the unchecked kernel, and a good block flags nothing."""
    from attnx.analysis.blocks import block_input
    from attnx.kernels.features import map_features, map_features_checked
    from attnx.store.checks import map_limits

    store = open_store(stores[dtype])
    block = next(store.blocks(max_bytes=1 << 30))
    n_maps = LAYERS * HEADS
    limits = map_limits(dtype)

    def kernel(attn: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        b = block.__class__(**{**block.__dict__, "attn": attn})
        args = (block_input(b), b.attn_offsets, b.lengths, b.len_a, b.tok_offsets, b.special, b.punct, LAYERS, HEADS)
        sums, flags = map_features_checked(*args, *limits)
        np.testing.assert_array_equal(sums, map_features(*args))
        return sums, flags

    assert not kernel(block.attn)[1][:, 0].any()
    seen = set()
    for attn in damaged(block.attn, dtype):
        want = first_bad_map_reference(attn, block.attn_offsets, block.lengths, n_maps, dtype)
        with np.errstate(invalid="ignore", over="ignore"):
            flags = kernel(attn)[1]
        flagged = np.flatnonzero(flags[:, 0])
        got = (int(flagged[0]), int(flags[flagged[0], 0])) if len(flagged) else (-1, 0)
        assert got == want[:2]
        seen.add(got[1])
    assert {OUT_OF_RANGE, BAD_SUM} <= seen or dtype == "uint8"


def test_relabelled_heads_are_refused(stores: dict[str, Path], tmp_path: Path) -> None:
    def edit(g: zarr.Group) -> None:
        a = dict(g.attrs["attnx"])
        a["model"] = {**a["model"], "heads": HEADS + 1}
        a["heads"] = list(range(1, HEADS + 1))
        g.attrs["attnx"] = a

    crafted = _craft(stores["float16"], tmp_path / "c.zarr", edit)
    with pytest.raises(StoreError, match="attributes do not match their recorded sha256"):
        open_store(crafted)
    result = CliRunner().invoke(main, ["info", str(crafted)])
    assert result.exit_code == 1 and "sha256" in result.output and result.output.count("\n") == 1


def test_benign_attribute_edit_still_opens(stores: dict[str, Path], tmp_path: Path) -> None:
    def edit(g: zarr.Group) -> None:
        a = dict(g.attrs["attnx"])
        a["model"] = {**a["model"], "name": "renamed"}
        g.attrs["attnx"] = a

    assert len(open_store(_craft(stores["float16"], tmp_path / "c.zarr", edit))) == 40


def test_incomplete_store_with_a_huge_window_and_input_id_allocates_little(
    stores: dict[str, Path], tmp_path: Path
) -> None:
    """window_records 10^9 and one input id 3*10^8: no reader allocates for 3*10^8 ids (2.5 GB before)."""

    def edit(g: zarr.Group) -> None:
        a = dict(g.attrs["attnx"])
        a["complete"] = False
        a["batching"] = {**a.get("batching", {}), "window_records": 10**9}
        g.attrs["attnx"] = seal(a)  # a crafter who knows the digest
        g["rec/input_id"][3] = 3 * 10**8

    crafted = _craft(stores["float16"], tmp_path / "c.zarr", edit)
    tracemalloc.start()
    try:
        with pytest.raises(StoreError, match="window_records"):
            open_store(crafted).position  # noqa: B018
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20, f"{peak / 1e6:.0f} MB"
