"""Ablation with the real MiniLM on GLUE dev data from ../shared/data (small seeded subsets)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from attnx.ablation.data import read_labelled
from attnx.ablation.forward import predict_configs
from attnx.ablation.prepare import prepare
from attnx.ablation.task_model import load_task_model
from attnx.cli.ablate import ablate_cmd

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SST2 = DATA / "glue_sst2_dev" / "dev.tsv"
QNLI = DATA / "glue_qnli_dev" / "dev.tsv"


def _need(path: Path) -> None:
    if not path.is_file():
        pytest.skip(f"../shared/data absent: {path} not found")


@pytest.fixture(scope="module")
def sst2_prepared():
    _need(SST2)
    tm = load_task_model("minilm", probe="logistic")
    return prepare(tm, read_labelled(SST2), seed=0, limit=160)


def test_sst2_reader_counts():
    _need(SST2)
    data = read_labelled(SST2)
    assert len(data) == 872 and data.text_b is None and set(data.labels) == {"0", "1"}
    assert data.lines[0] == 2


def test_batched_equals_sequential_on_minilm(sst2_prepared):
    prep = sst2_prepared
    assert len(prep.train) == 80 and len(prep.eval) == 80
    masks = np.zeros((5, 6, 12), bool)
    masks[1, 0, 3] = True
    masks[2, 3, 7] = True
    masks[3, 5, 11] = True
    masks[4, 2] = True
    subset = prep.eval[:12]
    for mode in ("uniform", "zero"):
        batched = predict_configs(prep.tm, prep.enc, subset, masks, mode)
        sequential = predict_configs(
            prep.tm, prep.enc, subset, masks, mode, share_prefix=False, configs_per_pass=1
        )
        np.testing.assert_allclose(batched, sequential, rtol=1e-4, atol=1e-4)
        assert not np.allclose(batched[0], batched[4])  # switching a layer off changes the logits


def test_probe_learns_sst2(sst2_prepared):
    prep = sst2_prepared
    logits = predict_configs(prep.tm, prep.enc, prep.eval, np.zeros((1, 6, 12), bool), "uniform")
    acc = (logits[0].argmax(-1) == prep.targets.y[prep.eval]).mean()
    assert acc > 0.6  # a probe on 80 sentences is well above chance (0.5)


def test_qnli_pairs_cli(tmp_path):
    _need(QNLI)
    out = tmp_path / "qnli"
    args = [
        "--model",
        "minilm",
        "--data",
        str(QNLI),
        "--probe",
        "logistic",
        "--mode",
        "zero",
        "--limit",
        "48",
        "--no-grid",
        "--heads",
        "0:0,1:1",
        "--heads",
        "5:0",
        "--bootstrap",
        "100",
        "-o",
        str(out),
    ]
    result = CliRunner().invoke(ablate_cmd, args)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["split"] == {"train": 24, "eval": 24} and summary["configurations"] == 3
    assert [s["heads"] for s in summary["head_sets"]] == ["0:0,1:1", "5:0"]
    assert not (out / "heads.png").exists()
