"""``attnx ablate`` / ``attnx importance`` end to end on tiny random models (a saved classifier and a
probe), the output contract, importance against finite differences, and one clear error per bad input."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from attnx.ablation.configs import build_configs
from attnx.ablation.forward import forward_configs
from attnx.ablation.task_model import TaskModel
from attnx.cli.ablate import ablate_cmd, importance_cmd
from attnx.engine.model import minilm_path, random_config

WORDS = "good bad great awful fine dull superb boring lovely terrible".split()


@pytest.fixture(scope="module")
def classifier_dir(tmp_path_factory):
    """A tiny random BertForSequenceClassification saved as safetensors, with MiniLM's tokenizer."""
    from transformers import BertForSequenceClassification

    path = tmp_path_factory.mktemp("clf")
    config = random_config("random-bert-tiny")
    config.num_labels = 2
    config.id2label = {0: "negative", 1: "positive"}
    config.label2id = {"negative": 0, "positive": 1}
    torch.manual_seed(0)
    BertForSequenceClassification(config).save_pretrained(path, safe_serialization=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(minilm_path() / name, path / name)
    return path


@pytest.fixture(scope="module")
def data_tsv(tmp_path_factory):
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("data") / "train.tsv"
    lines = ["sentence\tlabel"]
    for _ in range(48):
        words = rng.choice(WORDS, size=rng.integers(2, 9))
        label = "positive" if rng.random() < 0.5 else "negative"
        lines.append(" ".join(words) + f" \t{label}")
    path.write_text("\n".join(lines) + "\n")
    return path


def _csv(path):
    with open(path) as fh:
        return list(csv.DictReader(fh))


def test_ablate_classifier_outputs(classifier_dir, data_tsv, tmp_path):
    out = tmp_path / "out"
    args = [
        "--model",
        str(classifier_dir),
        "--data",
        str(data_tsv),
        "--mode",
        "uniform",
        "-o",
        str(out),
        "--bootstrap",
        "200",
        "--heads",
        "0:1,1:3",
        "--metric",
        "f1",
    ]
    result = CliRunner().invoke(ablate_cmd, args)
    assert result.exit_code == 0, result.output
    heads = _csv(out / "heads.csv")
    assert list(heads[0]) == ["layer", "head", "score", "delta", "ci_low", "ci_high"]
    assert [(int(r["layer"]), int(r["head"])) for r in heads] == [(a, b) for a in range(2) for b in range(4)]
    layers = _csv(out / "layers.csv")
    assert list(layers[0]) == ["layer", "score", "delta"] and len(layers) == 2
    summary = json.loads((out / "summary.json").read_text())
    assert summary["metric"] == "f1" and summary["mode"] == "uniform" and summary["seed"] == 0
    assert summary["split"] == {"train": 0, "eval": 48}
    base = summary["unablated_score"]
    for r in heads:
        assert float(r["delta"]) == pytest.approx(float(r["score"]) - base, abs=2e-6)
        assert float(r["ci_low"]) <= float(r["ci_high"])
    improving = [r for r in heads if float(r["score"]) > base]
    assert summary["improving_heads_count"] == len(improving)
    assert len(summary["layer_ablation"]) == 2 and summary["head_sets"][0]["heads"] == "0:1,1:3"
    assert (out / "heads.png").stat().st_size > 1000 and (out / "sets.csv").is_file()
    # the same run again gives the same numbers (seeded)
    again = tmp_path / "again"
    again_args = [str(again) if a == str(out) else a for a in args]
    assert CliRunner().invoke(ablate_cmd, again_args).exit_code == 0
    assert (again / "heads.csv").read_text() == (out / "heads.csv").read_text()


def test_ablate_probe_zero_mode(data_tsv, tmp_path):
    out = tmp_path / "p"
    result = CliRunner().invoke(
        ablate_cmd,
        [
            "--model",
            "random-bert-tiny",
            "--data",
            str(data_tsv),
            "--probe",
            "logistic",
            "--mode",
            "zero",
            "-o",
            str(out),
            "--bootstrap",
            "50",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["split"] == {"train": 24, "eval": 24} and summary["mode"] == "zero"
    assert len(_csv(out / "heads.csv")) == 8


def test_importance_cli(classifier_dir, data_tsv, tmp_path):
    out = tmp_path / "imp"
    result = CliRunner().invoke(
        importance_cmd, ["--model", str(classifier_dir), "--data", str(data_tsv), "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    rows = _csv(out / "importance.csv")
    assert len(rows) == 8 and list(rows[0]) == ["layer", "head", "importance", "raw"]
    imp = np.array([float(r["importance"]) for r in rows]).reshape(2, 4)
    np.testing.assert_allclose(np.linalg.norm(imp, axis=1), 1.0, rtol=1e-4)
    curve = _csv(out / "pruning.csv")
    assert [r["fraction"] for r in curve] == [f"{f / 10:.2f}" for f in range(11)]
    assert curve[0]["heads_pruned"] == "0" and curve[-1]["heads_pruned"] == "8"
    assert (out / "pruning.png").is_file() and (out / "importance.png").is_file()


def test_gate_gradient_matches_finite_difference():
    from attnx.ablation.masking import ATTN_ABLATE
    from attnx.engine.model import load_model

    lm = load_model("random-bert-tiny", seed=2, attn_implementation=ATTN_ABLATE)
    gen = torch.Generator().manual_seed(0)
    tm = TaskModel(
        lm, (torch.randn(2, 64, generator=gen), torch.zeros(2)), "classification", 2, None, "pooler"
    )
    enc = lm.tokenizer(["one two three", "four five"], padding=True, return_tensors="pt")
    args = (enc["input_ids"], enc["token_type_ids"], enc["attention_mask"])
    none = torch.from_numpy(build_configs(2, 4, grid=False).masks)
    target = torch.tensor([1, 0])

    def loss_at(gates):
        logits = forward_configs(tm, *args, none, "zero", gates=gates)[0]
        return torch.nn.functional.cross_entropy(logits.double(), target, reduction="none")

    gates = torch.ones(2, 2, 4, requires_grad=True)
    (grad,) = torch.autograd.grad(loss_at(gates).sum(), gates)
    eps = 1e-2
    for layer, head in ((0, 1), (1, 3)):
        up, down = torch.ones(2, 2, 4), torch.ones(2, 2, 4)
        up[:, layer, head] += eps
        down[:, layer, head] -= eps
        with torch.no_grad():
            fd = (loss_at(up) - loss_at(down)) / (2 * eps)  # per example
        torch.testing.assert_close(grad[:, layer, head].double(), fd, rtol=2e-2, atol=1e-4)


def test_bad_inputs_one_clear_error_each(classifier_dir, data_tsv, tmp_path):
    run = CliRunner().invoke
    nolabel = tmp_path / "nolabel.tsv"
    nolabel.write_text("sentence\nfoo\n")
    r = run(ablate_cmd, ["--model", str(classifier_dir), "--data", str(nolabel), "-o", str(tmp_path / "o")])
    assert r.exit_code == 1 and "labels missing" in r.output and "nolabel.tsv" in r.output
    unknown = tmp_path / "unknown.tsv"
    unknown.write_text("sentence\tlabel\ngood\tpositive\nbad\tneutral\n")
    r = run(ablate_cmd, ["--model", str(classifier_dir), "--data", str(unknown), "-o", str(tmp_path / "o")])
    assert r.exit_code == 1 and "unknown.tsv:3: unknown label value 'neutral'" in r.output
    r = run(
        ablate_cmd,
        [
            "--model",
            str(classifier_dir),
            "--data",
            str(unknown),
            "--task",
            "regression",
            "-o",
            str(tmp_path / "o"),
        ],
    )
    assert r.exit_code == 1 and "unknown.tsv:2: label 'positive' is not a number" in r.output
    r = run(ablate_cmd, ["--model", "random-bert-tiny", "--data", str(data_tsv), "-o", str(tmp_path / "o")])
    assert r.exit_code == 1 and "no classification head" in r.output and "--probe logistic" in r.output
    r = run(
        ablate_cmd,
        [
            "--model",
            "random-bert-tiny",
            "--probe",
            "logistic",
            "--data",
            str(unknown),
            "-o",
            str(tmp_path / "o"),
        ],
    )
    assert r.exit_code == 1 and "too few to split" in r.output
    r = run(
        ablate_cmd,
        [
            "--model",
            str(classifier_dir),
            "--data",
            str(data_tsv),
            "--heads",
            "5:1",
            "-o",
            str(tmp_path / "o"),
        ],
    )
    assert r.exit_code == 1 and "outside the model's 2 x 4 heads" in r.output
