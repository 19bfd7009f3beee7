"""Every stored map must equal transformers' own eager attention (fp32, output_attentions=True).

Each reference sentence runs alone (no padding); the engine runs them length-sorted and padded inside
large batches, so these tests also prove that padding never leaks into the maps.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
from helpers.paths import SAMPLE, shared_file

from attnx.engine.backend_choice import COMPUTE_SLACK
from attnx.engine.extract import ExtractOptions, extract
from attnx.store import open_store
from attnx.stored_dtypes import DTYPES

# stored dtype's bound (attnx.stored_dtypes) plus fp32 compute noise against eager attention
TOL = {"float32": 1e-5, "float16": 5e-4, **{q: DTYPES[q].max_abs_error + 2e-6 for q in ("uint8", "q10", "q12", "q16")}}
# the default backend (auto: onnx here when onnxruntime is installed) adds its parity check's compute slack
TOL_AUTO = {dtype: tol + COMPUTE_SLACK["float32"] for dtype, tol in TOL.items()}


def reference_maps(model, tokenizer, a: str, b: str | None) -> np.ndarray:
    enc = tokenizer(a, b, return_tensors="pt", truncation=True, max_length=512)
    with torch.no_grad():
        out = model(**enc, output_attentions=True)
    return torch.stack(out.attentions)[:, 0].numpy()  # (layers, heads, l, l)


def check_store(store_path, records, model, tokenizer, dtype):
    store = open_store(store_path)
    tol = TOL[dtype] if store.attrs["options"]["backend"] == "torch" else TOL_AUTO[dtype]
    assert len(store) == len(records)
    worst = 0.0
    for i, (a, b) in enumerate(records):
        ref = reference_maps(model, tokenizer, a, b)
        got = store.attention(i)
        assert got.shape == ref.shape, i
        worst = max(worst, float(np.abs(got - ref).max()))
    assert worst <= tol, f"{dtype}: max abs error {worst:.3g} > {tol}"
    return worst


@pytest.mark.parametrize(
    "dtype,backend",
    [(d, "torch") for d in ("float32", "float16", "uint8", "q10", "q12", "q16")]
    # the default backend too: float16 (its own graph) and q16 (the float32 graph, the tightest quantised bound)
    + [(d, "auto") for d in ("float16", "q16")],
)
def test_minilm_singles_and_pairs(tmp_path, dtype, backend, minilm, eager_minilm):
    singles = (SAMPLE / "sample.txt").read_text(encoding="utf-8").splitlines()[:40]
    pairs = [tuple(x.split("\t")) for x in (SAMPLE / "sample_pairs.tsv").read_text(encoding="utf-8").splitlines()[:20]]
    (tmp_path / "s.txt").write_text("\n".join(singles) + "\n", encoding="utf-8")
    (tmp_path / "p.tsv").write_text("\n".join("\t".join(p) for p in pairs) + "\n", encoding="utf-8")
    for name, records in (("s.txt", [(s, None) for s in singles]), ("p.tsv", pairs)):
        out = tmp_path / f"{name}.{dtype}.zarr"
        extract(ExtractOptions(input=str(tmp_path / name), output=str(out), dtype=dtype, device="cpu", backend=backend))
        check_store(out, records, eager_minilm, minilm.tokenizer, dtype)
        if backend == "auto" and importlib.util.find_spec("onnxruntime"):
            assert open_store(out).attrs["options"]["backend"] == "onnx"  # the check covers the onnx path


def test_random_tiny_bert(tmp_path):
    from transformers import BertModel

    from attnx.engine.model import load_model

    loaded = load_model("random-bert-tiny", seed=0)
    eager = BertModel(
        loaded.model.config.__class__(**{**loaded.model.config.to_dict(), "_attn_implementation": "eager"})
    )
    eager.config._attn_implementation = "eager"
    eager.load_state_dict(loaded.model.state_dict())
    eager.eval()
    pairs = [tuple(x.split("\t")) for x in (SAMPLE / "sample_pairs.tsv").read_text(encoding="utf-8").splitlines()[:30]]
    (tmp_path / "p.tsv").write_text("\n".join("\t".join(p) for p in pairs) + "\n", encoding="utf-8")
    extract(
        ExtractOptions(
            input=str(tmp_path / "p.tsv"),
            output=str(tmp_path / "t.zarr"),
            model="random-bert-tiny",
            dtype="float32",
            device="cpu",
        )
    )
    check_store(tmp_path / "t.zarr", pairs, eager, loaded.tokenizer, "float32")


def test_real_ewt_sentences(tmp_path, minilm, eager_minilm):
    lines = shared_file("ud_english_ewt/dev/sentences.txt").read_text(encoding="utf-8").splitlines()[:60]
    (tmp_path / "ewt.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    extract(
        ExtractOptions(input=str(tmp_path / "ewt.txt"), output=str(tmp_path / "e.zarr"), dtype="float16", device="cpu")
    )
    check_store(tmp_path / "e.zarr", [(x.strip(), None) for x in lines], eager_minilm, minilm.tokenizer, "float16")
