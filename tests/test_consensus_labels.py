"""pattern_classifier/consensus_labels.py: the consensus rule, the by-record split, and the committed v3 labels are
what the tool makes of the two labellers' committed files."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "pattern_classifier"))

import consensus_labels as cl  # noqa: E402


@pytest.mark.parametrize(
    ("a", "b", "want"),
    [
        (("block", "low"), ("block", "low"), ("block", "high")),
        (("block", "high"), ("vertical", "low"), ("block", "resolved")),
        (("block", "low"), ("vertical", "high"), ("vertical", "resolved")),
        (("block", "high"), ("vertical", "high"), ("disputed", "disputed")),
        (("block", "low"), ("vertical", "low"), ("disputed", "disputed")),
    ],
)
def test_consensus_rule(a: tuple[str, str], b: tuple[str, str], want: tuple[str, str]) -> None:
    assert cl.consensus(a, b) == want


def _row(item: str, line: int, stratum: str) -> dict[str, str]:
    return {"item": item, "stratum": stratum, "source": "s.tsv", "line": str(line), "length": "30", "len_a": "12"}


def test_record_split_keeps_records_whole_and_halves_each_group() -> None:
    rows = [_row(f"c{k}", k // 2, "block_candidate") for k in range(40)]  # 20 candidate records, 2 maps each
    rows += [_row(f"k{k}", 100 + k, "control") for k in range(10)]  # 10 control-only records
    rows.append(_row("x", 0, "control"))  # a control map of a candidate record stays with its record
    split = cl.record_split(rows, seed=2027, test_fraction=0.5)
    by_record: dict[str, set[str]] = {}
    for r in rows:
        by_record.setdefault(r["line"], set()).add(split[r["item"]])
    assert all(len(v) == 1 for v in by_record.values())
    test = {line for line, v in by_record.items() if v == {"test"}}
    assert sum(int(line) < 100 for line in test) == 10 and sum(int(line) >= 100 for line in test) == 5
    assert cl.record_split(rows, seed=2027, test_fraction=0.5) == split
    assert cl.record_split(rows, seed=1, test_fraction=0.5) != split


def test_committed_v3_labels_are_the_tools_output(tmp_path: Path) -> None:
    for who in ("A", "B"):  # the labellers' files hold ids and labels only, no text
        with (ROOT / "validation" / f"pattern_labels_v3_{who}.csv").open(encoding="utf-8") as f:
            assert next(csv.reader(f)) == ["item", "label", "confidence"]
    out = tmp_path / "labels.csv"
    cl.main(["--set", "v3", "--out", str(out), "--results", str(tmp_path)])
    committed = ROOT / "validation" / "pattern_labels_v3.csv"
    assert out.read_text(encoding="utf-8") == committed.read_text(encoding="utf-8")
    assert (tmp_path / "labeller_agreement_v3.json").read_text() == (
        ROOT / "pattern_classifier" / "results" / "labeller_agreement_v3.json"
    ).read_text()


def test_bad_label_row_names_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "a.csv"
    bad.write_text("item,label,confidence\nb0001,vertical,high\nb0002,blok,low\n")
    with pytest.raises(SystemExit, match=r"a\.csv:3: label 'blok'"):
        cl.read_labeller(bad, {"b0001", "b0002"})


@pytest.mark.parametrize("name", ["v4", "v5", "v6"])
def test_fresh_set_puts_every_item_in_test(tmp_path: Path, name: str) -> None:
    """``--set v4`` / ``v5`` / ``v6`` on synthetic labeller files (random labels: the real labels of the fresh test
    samples are never read by tests); outputs go to ``tmp_path`` only."""
    import numpy as np

    sample = list(csv.DictReader((ROOT / "validation" / f"pattern_sample_{name}.csv").open(encoding="utf-8")))
    rng = np.random.default_rng(0)
    for who in ("A", "B"):
        labels = rng.choice(cl.LABELS, len(sample))
        conf = rng.choice(cl.CONFIDENCE, len(sample))
        lines = ["item,label,confidence"] + [f"{r['item']},{lab},{c}" for r, lab, c in zip(sample, labels, conf,
                                                                                          strict=True)]
        (tmp_path / f"{who}.csv").write_text("\n".join(lines) + "\n")
    out = tmp_path / "labels.csv"
    cl.main(["--set", name, "--a", str(tmp_path / "A.csv"), "--b", str(tmp_path / "B.csv"), "--out", str(out),
             "--results", str(tmp_path)])
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert [r["item"] for r in rows] == [r["item"] for r in sample]
    assert {r["split"] for r in rows} == {"test"}
    assert list(rows[0]) == ["item", "label_a", "confidence_a", "label_b", "confidence_b", "consensus", "confidence",
                             "split"]
    md = (tmp_path / f"labeller_agreement_{name}.md").read_text()
    assert f"{name} test sample" in md and "| block candidates | 144 |" in md
    assert "| random sample (representative) | 672 |" in md
    res = (tmp_path / f"labeller_agreement_{name}.json").read_text()
    assert f'"sample": "validation/pattern_sample_{name}.csv"' in res


def test_fresh_sets_default_paths() -> None:
    """Each fresh sample reads its own labellers' files and writes its own labels and agreement files."""
    for name in ("v4", "v5", "v6"):
        cfg = cl.SETS[name]
        assert cfg["a"] == Path(f"/work/labels/{name}_labeller_A.csv") and cfg["test_fraction"] == 1.0
        assert cfg["out"] == ROOT / "validation" / f"pattern_labels_{name}.csv"
        assert cfg["stem"] == f"labeller_agreement_{name}"
