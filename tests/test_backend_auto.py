"""``--backend auto``: onnx on CPU when onnxruntime imports and the export passes the parity check, torch
otherwise (one logged line saying why); the store records the backend that ran; a resume keeps it.

Exports and verdicts go to the session's ``ATTNX_CACHE`` (tests/conftest.py) unless a test needs a fresh one.
"""

from __future__ import annotations

import dataclasses
import logging
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from helpers.paths import SAMPLE

from attnx.config import load_config
from attnx.engine import backend_choice
from attnx.engine.backend_choice import ParityVerdict, auto_rule, choose_backend, parity_tolerance
from attnx.engine.extract import ExtractOptions, extract
from attnx.errors import AttnxError, InputError, StoreError
from attnx.store import open_store

pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install 'attnx[onnx]')")
pytest.importorskip("onnx", reason="onnx is not installed (pip install 'attnx[onnx]')")

LOG = "attnx.engine.backend_choice"


def verdict(passed: bool = True, device: str = "cpu", onnx_s: float | None = None, torch_s: float | None = None):
    return ParityVerdict(passed, 1e-6 if passed else 0.5, 1e-5, 24, "float16", device, 0.1, onnx_s, torch_s)


@pytest.fixture(scope="module")
def tiny():
    from attnx.engine.model import load_model

    return load_model("random-bert-tiny", seed=0)


@pytest.fixture
def corpus(tmp_path):
    lines = (SAMPLE / "sample.txt").read_text(encoding="utf-8").splitlines()[:40]
    path = tmp_path / "c.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path, lines


def test_rule_cpu_and_cuda():
    assert auto_rule("cpu", False, verdict())[0] == "onnx"
    assert auto_rule("cpu", False, verdict(passed=False)) == (
        "torch", "onnx export failed the parity check (max abs error 0.5 > 1e-05 on 24 sample records)")
    assert auto_rule("cpu", False, None)[0] == "torch"
    # CUDA: torch unless onnxruntime-gpu is there AND the export passed AND it ran the sample faster
    assert auto_rule("cuda", False, verdict(device="cuda", onnx_s=0.1, torch_s=0.2))[0] == "torch"
    assert auto_rule("cuda", True, verdict(device="cuda", onnx_s=0.3, torch_s=0.2))[0] == "torch"
    assert auto_rule("cuda", True, verdict(device="cuda"))[0] == "torch"  # not measured: not faster
    assert auto_rule("cuda", True, verdict(passed=False, device="cuda", onnx_s=0.1, torch_s=0.2))[0] == "torch"
    assert auto_rule("cuda", True, verdict(device="cuda", onnx_s=0.1, torch_s=0.2))[0] == "onnx"


def test_tolerance_is_the_stored_bound_plus_compute_slack():
    assert parity_tolerance("float32", "float32") == pytest.approx(1e-5)
    assert parity_tolerance("float16", "float32") == pytest.approx(2.0**-12 + 1e-5)
    assert parity_tolerance("q10", "float32") == pytest.approx(0.5 / 1023 + 2.0**-22 + 1e-5)
    assert parity_tolerance("float16", "float16") == pytest.approx(2.0**-12 + 2e-3)


def test_cuda_choice_by_monkeypatching(tiny, monkeypatch):
    """No GPU here: a loaded model that claims CUDA, onnxruntime's provider list and the verdict are faked."""
    import onnxruntime

    on_cuda = dataclasses.replace(tiny, device_name="cuda")
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    monkeypatch.setattr(backend_choice, "parity_verdict", lambda *a, **k: pytest.fail("no check without the provider"))
    choice = choose_backend("auto", on_cuda, [0, 1], [0, 1, 2, 3], "float16")
    assert choice.backend == "torch" and "no CUDA provider" in choice.reason
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: providers)
    for onnx_s, want in ((0.3, "torch"), (0.1, "onnx")):
        monkeypatch.setattr(backend_choice, "parity_verdict", lambda *a, s=onnx_s, **k: verdict(True, "cuda", s, 0.2))
        assert choose_backend("auto", on_cuda, [0, 1], [0, 1, 2, 3], "float16").backend == want


def test_auto_picks_onnx_when_parity_passes_and_caches_the_verdict(tiny, monkeypatch, tmp_path):
    monkeypatch.setenv("ATTNX_CACHE", str(tmp_path))
    choice = choose_backend("auto", tiny, [0, 1], [0, 1, 2, 3], "float16")
    assert choice.backend == "onnx" and choice.verdict.passed
    assert 0 < choice.verdict.max_abs_error <= choice.verdict.tolerance
    assert choice.verdict.records == 24
    assert len(list(tmp_path.rglob("*.parity-cpu-float16.json"))) == 1
    monkeypatch.setattr(backend_choice, "run_parity_check", lambda *a, **k: pytest.fail("verdict not reused"))
    again = choose_backend("auto", tiny, [0, 1], [0, 1, 2, 3], "float16")
    assert again.backend == "onnx" and again.verdict == choice.verdict
    # another dtype is another verdict (its own bound), checked once
    monkeypatch.undo()
    monkeypatch.setenv("ATTNX_CACHE", str(tmp_path))
    assert choose_backend("auto", tiny, [0, 1], [0, 1, 2, 3], "q10").verdict.store_dtype == "q10"


def test_auto_falls_back_when_onnxruntime_is_missing(tiny, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime -> ImportError
    monkeypatch.setattr(backend_choice, "parity_verdict", lambda *a, **k: pytest.fail("no check without onnxruntime"))
    with caplog.at_level(logging.WARNING, logger=LOG):
        choice = choose_backend("auto", tiny, [0], [0], "float16")
    assert choice.backend == "torch" and "onnxruntime is not installed" in choice.reason
    lines = [r.getMessage() for r in caplog.records if r.name == LOG]
    assert len(lines) == 1 and "runs torch: onnxruntime is not installed" in lines[0] and "\n" not in lines[0]


def test_auto_falls_back_when_parity_fails(tiny, monkeypatch, caplog, tmp_path):
    monkeypatch.setenv("ATTNX_CACHE", str(tmp_path))
    monkeypatch.setattr(backend_choice, "parity_tolerance", lambda *a: -1.0)  # nothing can pass
    with caplog.at_level(logging.WARNING, logger=LOG):
        choice = choose_backend("auto", tiny, [0], [0], "float16")
    assert choice.backend == "torch" and not choice.verdict.passed
    lines = [r.getMessage() for r in caplog.records if r.name == LOG]
    assert len(lines) == 1 and "failed the parity check" in lines[0]


def test_auto_falls_back_when_export_fails(tiny, monkeypatch, caplog):
    from attnx.engine import onnx_export

    def broken(*args, **kwargs):
        raise onnx_export.OnnxExportError("random-bert-tiny: ONNX export failed (RuntimeError: boom)")

    monkeypatch.setattr(onnx_export, "ensure_onnx", broken)
    with caplog.at_level(logging.WARNING, logger=LOG):
        choice = choose_backend("auto", tiny, [0], [1], "float16")
    assert choice.backend == "torch" and "boom" in choice.reason
    assert sum(r.name == LOG for r in caplog.records) == 1


def test_explicit_and_special_cases(tiny, monkeypatch):
    monkeypatch.setattr(backend_choice, "parity_verdict", lambda *a, **k: pytest.fail("explicit: no check"))
    assert choose_backend("torch", tiny, [0], [0], "float16").backend == "torch"
    assert choose_backend("onnx", tiny, [0], [0], "float16").backend == "onnx"
    assert choose_backend("auto", tiny, [0], [0], "float16", stats_only=True).backend == "torch"
    bf16 = dataclasses.replace(tiny, compute="bfloat16")
    assert choose_backend("auto", bf16, [0], [0], "float16").backend == "torch"
    assert choose_backend("auto", tiny, [0], [0], "float16", recorded="torch").backend == "torch"
    with pytest.raises(AttnxError, match="--backend 'tensorrt': choose auto, torch, onnx"):
        choose_backend("tensorrt", tiny, [0], [0], "float16")


def test_default_extract_records_the_backend_and_info_shows_it(tmp_path, corpus):
    """The default path end to end: MiniLM, float16, no --backend."""
    from attnx.cli.main import main

    path, _ = corpus
    out = tmp_path / "auto.zarr"
    summary = extract(ExtractOptions(input=str(path), output=str(out), device="cpu"))
    assert summary.backend == "onnx"
    store = open_store(out)
    assert store.attrs["options"]["backend"] == "onnx"
    parity = store.attrs["precision"]["backend_parity"]
    assert parity["passed"] and parity["max_abs_error"] <= parity["tolerance"] < 2.6e-4
    result = CliRunner().invoke(main, ["info", str(out)])
    assert result.exit_code == 0, result.output
    assert "backend  onnx (parity vs torch on 24 sample records: max abs error" in result.output
    torch_out = tmp_path / "torch.zarr"
    result = CliRunner().invoke(main, ["extract", str(path), "-o", str(torch_out), "--backend", "torch", "-q"])
    assert result.exit_code == 0 and "torch backend" in result.output, result.output
    assert open_store(torch_out).attrs["options"]["backend"] == "torch"
    assert "backend_parity" not in open_store(torch_out).attrs["precision"]
    # the onnx store keeps the float16 bound against the torch store's float16 maps (one half-ulp step apart)
    worst = max(float(np.abs(store.attention(i) - open_store(torch_out).attention(i)).max()) for i in range(40))
    assert worst <= 2 * 2.0**-12


def _interrupted(tmp_path, lines, out, backend, cfg):
    """A store stopped by bad input at line 31 (records of the first windows committed), then the input fixed."""
    path = tmp_path / "r.txt"
    text = "\n".join(lines[:30]).encode() + b"\n\xc3\x28 broken\n" + "\n".join(lines[31:]).encode() + b"\n"
    path.write_bytes(text)
    with pytest.raises(InputError):
        extract(ExtractOptions(input=str(path), output=str(out), device="cpu", model="random-bert-tiny",
                               backend=backend), config=cfg)
    assert 0 < len(open_store(out)) < len(lines) and not open_store(out).complete
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("first", ["auto", "torch"])
def test_resume_keeps_the_recorded_backend_and_refuses_another(tmp_path, corpus, first):
    """auto resumes with the backend the store was made with, so the finished store holds the same bytes as one
    made in one run; naming the other backend is refused in one line (its maps differ by float16 ulps)."""
    _, lines = corpus
    cfg = load_config(window_records=8, attn_chunk_elems=1 << 12, commit_bytes=1)
    out = tmp_path / "resumed.zarr"
    path = _interrupted(tmp_path, lines, out, first, cfg)
    made_with = open_store(out).attrs["options"]["backend"]
    assert made_with == ("onnx" if first == "auto" else "torch")
    other = "torch" if made_with == "onnx" else "onnx"
    with pytest.raises(StoreError, match=f"different backend \\(store: {made_with}, asked: {other}\\)") as err:
        extract(ExtractOptions(input=str(path), output=str(out), device="cpu", model="random-bert-tiny",
                               backend=other), config=cfg)
    assert "\n" not in str(err.value)
    s = extract(ExtractOptions(input=str(path), output=str(out), device="cpu", model="random-bert-tiny"), config=cfg)
    assert s.status == "complete" and s.resumed_from > 0 and s.backend == made_with
    one_run = tmp_path / "one.zarr"
    extract(ExtractOptions(input=str(path), output=str(one_run), device="cpu", model="random-bert-tiny",
                           backend=made_with), config=cfg)
    a, b = open_store(out), open_store(one_run)
    assert a.attrs["options"]["backend"] == made_with and len(a) == len(b) == len(lines)
    for i in range(len(lines)):
        np.testing.assert_array_equal(a.attention(i), b.attention(i))


def test_resuming_an_onnx_store_where_onnx_cannot_run_is_refused(tiny, monkeypatch):
    """Finishing it with torch would mix float16 ulps of two backends in one store: refused in one line."""
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(AttnxError, match=r"made with --backend onnx, which cannot run .*--overwrite") as err:
        choose_backend("auto", tiny, [0], [0], "float16", recorded="onnx")
    assert "\n" not in str(err.value)
