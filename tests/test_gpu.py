"""Extraction on a real CUDA device (``gpu`` marker; skipped, with its reason, on a machine without one).

Everything else about the CUDA path runs on the CPU twin (tests/helpers/cuda_twin.py); this checks that the
real device, in fp32 compute, stores the maps the CPU stores."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.paths import SAMPLE

import attnx

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here (run pytest -m gpu on a GPU)"),
]


def _corpus(tmp_path: Path) -> Path:
    src = tmp_path / "in.txt"
    src.write_text("\n".join((SAMPLE / "sample.txt").read_text(encoding="utf-8").splitlines()[:24]) + "\n")
    return src


def test_cuda_store_equals_cpu_store(tmp_path: Path) -> None:
    src = _corpus(tmp_path)
    common = dict(model="minilm", dtype="float32", compute_dtype="float32", backend="torch")
    attnx.extract(src, tmp_path / "cpu.zarr", device="cpu", **common)
    attnx.extract(src, tmp_path / "cuda.zarr", device="cuda", **common)
    cpu, cuda = attnx.open_store(tmp_path / "cpu.zarr"), attnx.open_store(tmp_path / "cuda.zarr")
    assert len(cpu) == len(cuda) == 24
    for i in range(len(cpu)):
        assert cpu.tokens(i) == cuda.tokens(i)
        np.testing.assert_allclose(cuda.attention(i), cpu.attention(i), atol=1e-5)
