"""Labelled data readers, label parsing and splits, metrics and the probe."""

from __future__ import annotations

import json

import numpy as np
import pytest

from attnx.ablation.data import parse_labels, read_labelled, split_indices
from attnx.ablation.metrics import bootstrap_scores, from_confusion, percentile_ci, rankdata, scores
from attnx.ablation.probe import fit_logistic, fit_ridge
from attnx.errors import InputError


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_glue_single_and_pair_headers(tmp_path):
    sst = read_labelled(_write(tmp_path / "sst.tsv", "sentence\tlabel\nit 's fine . \t1\nbad \t0\n"))
    assert sst.text_a == ["it 's fine .", "bad"] and sst.text_b is None and sst.labels == ["1", "0"]
    assert list(sst.lines) == [2, 3]
    qnli = read_labelled(
        _write(tmp_path / "q.tsv", "index\tquestion\tsentence\tlabel\n0\tWhy?\tBecause.\tentailment\n")
    )
    assert qnli.text_a == ["Why?"] and qnli.text_b == ["Because."] and qnli.labels == ["entailment"]
    mrpc = read_labelled(
        _write(tmp_path / "m.tsv", "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n1\t7\t8\tA b\tC d\n")
    )
    assert mrpc.text_a == ["A b"] and mrpc.text_b == ["C d"] and mrpc.labels == ["1"]


def test_hf_export_with_quotes(tmp_path):
    text = 'sentence1\tsentence2\tlabel\tidx\n"He said ""hi"" there"\tA "b" c\t1\t0\nplain\tx\t0\t1\n'
    data = read_labelled(_write(tmp_path / "rte.tsv", text))
    assert data.text_a == ['He said "hi" there', "plain"] and data.labels == ["1", "0"]


def test_no_header_needs_columns(tmp_path):
    path = _write(tmp_path / "cola.tsv", "src\t1\t\tGood sentence .\nsrc\t0\t*\tBad sentence\n")
    with pytest.raises(InputError, match="explicit text and label columns"):
        read_labelled(path, header=False)
    data = read_labelled(path, text_cols=(3,), label_col=1, header=False)
    assert data.text_a == ["Good sentence .", "Bad sentence"] and data.labels == ["1", "0"]


def test_jsonl(tmp_path):
    rows = [
        {"premise": "p1", "hypothesis": "h1", "label": "yes"},
        {"premise": "p2", "hypothesis": "h2", "label": 0},
    ]
    path = _write(tmp_path / "d.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n")
    data = read_labelled(path)
    assert data.text_a == ["p1", "p2"] and data.text_b == ["h1", "h2"] and data.labels == ["yes", "0"]
    bad = _write(tmp_path / "e.jsonl", '{"text": "a", "label": 1}\n{"text": "b"}\n')
    with pytest.raises(InputError, match=r"e.jsonl:2: label missing"):
        read_labelled(bad)


def test_label_errors_name_file_and_line(tmp_path):
    with pytest.raises(InputError, match="labels missing: no label column"):
        read_labelled(_write(tmp_path / "a.tsv", "sentence\tfoo\nx\ty\n"))
    with pytest.raises(InputError, match=r"b.tsv:3: label missing"):
        read_labelled(_write(tmp_path / "b.tsv", "sentence\tlabel\nx\t1\ny\t \n"))
    with pytest.raises(InputError, match=r"c.tsv:2: 1 tab-separated fields"):
        read_labelled(_write(tmp_path / "c.tsv", "sentence\tlabel\nno tab here\n"))
    data = read_labelled(_write(tmp_path / "d.tsv", "sentence\tlabel\nx\tpositive\ny\tmaybe\n"))
    with pytest.raises(InputError, match=r"d.tsv:3: unknown label value 'maybe'"):
        parse_labels(data, label2id={"positive": 1, "negative": 0}, num_labels=2)
    with pytest.raises(InputError, match=r"d.tsv:2: label 'positive' is not a number"):
        parse_labels(data, task="regression")
    one = read_labelled(_write(tmp_path / "e.tsv", "sentence\tlabel\nx\t1\ny\t1\n"))
    with pytest.raises(InputError, match="only one label value"):
        parse_labels(one)


def test_parse_labels_kinds(tmp_path):
    data = read_labelled(_write(tmp_path / "r.tsv", "sentence1\tsentence2\tscore\na\tb\t3.2\nc\td\t1\n"))
    t = parse_labels(data)
    assert t.task == "regression" and t.y.tolist() == [3.2, 1.0]
    cls = read_labelled(_write(tmp_path / "c.tsv", "sentence\tlabel\na\t10\nb\t2\nc\t2\n"))
    t = parse_labels(cls)
    assert t.classes == ["2", "10"] and t.y.tolist() == [1, 0, 0]
    t = parse_labels(
        cls.subset(np.array([1, 2])), label2id={"LABEL_0": 0, "LABEL_1": 1, "LABEL_2": 2}, num_labels=3
    )
    assert t.y.tolist() == [2, 2]


def test_split():
    train, held = split_indices(10, 0.5, seed=3)
    assert len(train) == 5 and sorted(np.concatenate([train, held]).tolist()) == list(range(10))
    assert np.array_equal(train, split_indices(10, 0.5, seed=3)[0])
    with pytest.raises(InputError, match="too few to split"):
        split_indices(3, 0.5, seed=0, path="x.tsv")


def test_metrics_by_hand():
    y = np.array([1, 1, 1, 0, 0, 0, 0, 1])
    pred = np.array([[1, 1, 0, 0, 0, 1, 0, 1]])
    tp, fp, fn, tn = 3, 1, 1, 3
    assert scores(y, pred, "accuracy", 2)[0] == pytest.approx(6 / 8)
    assert scores(y, pred, "f1", 2)[0] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    mcc = (tp * tn - fp * fn) / np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    assert scores(y, pred, "mcc", 2)[0] == pytest.approx(mcc)
    cm = np.array([[5, 1, 0], [2, 3, 1], [0, 0, 4]])
    f1s = [2 * 5 / (10 + 2 + 1), 2 * 3 / (6 + 1 + 3), 2 * 4 / (8 + 1 + 0)]
    assert from_confusion(cm, "f1") == pytest.approx(np.mean(f1s))
    x = np.array([1.0, 2.0, 2.0, 4.0])
    assert rankdata(x).tolist() == [1.0, 2.5, 2.5, 4.0]
    assert scores(x, (x * 3)[None], "pearson")[0] == pytest.approx(1.0)
    assert scores(x, (-(x**3))[None], "spearman")[0] == pytest.approx(-1.0)


def test_bootstrap_seeded_and_paired():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 80)
    pred = np.stack([y, np.where(rng.random(80) < 0.3, 1 - y, y)])
    a = bootstrap_scores(y, pred, "accuracy", 2, n_boot=200, seed=5)
    b = bootstrap_scores(y, pred, "accuracy", 2, n_boot=200, seed=5)
    assert np.array_equal(a, b) and a.shape == (200, 2)
    assert (a[:, 0] == 1.0).all()
    low, high = percentile_ci(a)
    assert low[1] <= scores(y, pred, "accuracy", 2)[1] <= high[1]


def test_probes_fit():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 5))
    y = (x[:, 0] - x[:, 1] > 0).astype(np.int64)
    probe = fit_logistic(x, y, 2, seed=0)
    import torch

    acc = (probe(torch.from_numpy(x).float()).argmax(1).numpy() == y).mean()
    assert acc > 0.95
    target = 2 * x[:, 2] + 1
    ridge = fit_ridge(x, target, l2=1e-3)
    np.testing.assert_allclose(ridge(torch.from_numpy(x).float())[:, 0].numpy(), target, atol=1e-2)


@pytest.mark.parametrize("classes", [2, 3])
def test_logistic_probe_minimises_its_stated_objective(classes: int) -> None:
    """The fit (scikit-learn) is a stationary point of mean cross-entropy + l2 * |W|^2 / classes."""
    import torch

    rng = np.random.default_rng(classes)
    x = rng.normal(size=(300, 8))
    y = np.argmax(x @ rng.normal(size=(classes, 8)).T + rng.normal(size=(300, classes)), 1)
    probe = fit_logistic(x, y, classes, l2=0.05)
    z = ((torch.as_tensor(x) - probe.mean.double()) / probe.std.double()).detach()
    w = probe.weight.double().clone().requires_grad_(True)
    b = probe.bias.double().clone().requires_grad_(True)
    loss = torch.nn.functional.cross_entropy(z @ w.T + b, torch.as_tensor(y)) + 0.05 * (w * w).sum() / classes
    loss.backward()
    assert float(w.grad.abs().max()) < 1e-4 and float(b.grad.abs().max()) < 1e-4


def test_plain_glue_tsv_with_leading_quotes_reads_like_extract(tmp_path):
    """Sentences that start with a quote in a plain GLUE file were read as CSV: rows ran together, quotes
    vanished (1,464 rows became 1,458 examples). Now one example per line, text as written, like extract."""
    from attnx.engine.sources import Source

    body = ['"Yes, she said.\t1', 'A plain one .\t0', 'He said no" .\t1', '"No" .\t1', 'Last .\t0']
    path = _write(tmp_path / "sst.tsv", "sentence\tlabel\n" + "\n".join(body) + "\n")
    data = read_labelled(path)
    assert data.text_a == [b.split("\t")[0] for b in body] and data.labels == ["1", "0", "1", "1", "0"]
    assert list(data.lines) == [2, 3, 4, 5, 6]  # one example per line: the row count the file's lines give
    texts = path.with_name("texts.tsv")
    texts.write_text("\n".join(b.split("\t")[0] for b in body) + "\n", encoding="utf-8")
    assert [r.text_a for r in Source(str(texts), "tsv")] == data.text_a
