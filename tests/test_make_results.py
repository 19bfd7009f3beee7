"""benchmarks/make_results.py: RESULTS.md is exactly what the template and the committed result files give, and
the placeholders find (or loudly fail to find) their figures."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import make_results  # noqa: E402
from results_sections import gpu_table  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"


def test_results_md_is_regenerated_from_the_committed_result_files():
    text = make_results.render((ROOT / "benchmarks" / "RESULTS.template.md").read_text(encoding="utf-8"), RESULTS)
    assert text == (ROOT / "benchmarks" / "RESULTS.md").read_text(encoding="utf-8"), (
        "benchmarks/RESULTS.md differs from its template + results/: run python benchmarks/make_results.py"
    )
    assert "{{" not in text


def test_classifier_results_md_is_regenerated_from_its_result_files():
    """pattern_classifier/RESULTS.md is rendered by the same tool from its own template and result files."""
    folder = ROOT / "pattern_classifier"
    text = make_results.render((folder / "RESULTS.template.md").read_text(encoding="utf-8"), folder / "results")
    assert text == (folder / "RESULTS.md").read_text(encoding="utf-8"), (
        "pattern_classifier/RESULTS.md differs from its template + results/: run python benchmarks/make_results.py "
        "--template pattern_classifier/RESULTS.template.md --results pattern_classifier/results "
        "--out pattern_classifier/RESULTS.md"
    )
    assert "{{" not in text


def test_check_fails_on_a_hand_edit(tmp_path, capsys):
    edited = tmp_path / "RESULTS.md"
    text = (ROOT / "benchmarks" / "RESULTS.md").read_text(encoding="utf-8")
    assert make_results.main(["--check", "--out", str(ROOT / "benchmarks" / "RESULTS.md")]) == 0
    i = next(k for k, c in enumerate(text) if c.isdigit())
    edited.write_text(text[:i] + str((int(text[i]) + 1) % 10) + text[i + 1 :], encoding="utf-8")
    assert make_results.main(["--check", "--out", str(edited)]) == 1
    assert "differs" in capsys.readouterr().err


@pytest.fixture
def results(tmp_path):
    (tmp_path / "r.json").write_text(json.dumps({
        "runs": [{"kind": "a", "n": 2, "v": 1.5}, {"kind": "b", "n": 2, "v": 2.5}, {"kind": "a", "n": 3, "v": 4.0}],
        "d": {"x": {"s": 1}, "y": {"s": 2}},
        "name": "minilm",
    }))
    return tmp_path


@pytest.mark.parametrize(
    ("spec", "text"),
    [
        ("r/name :", "minilm"),
        ("r.json/runs/1/v :.2f", "2.50"),
        ("r/runs/-1/n :d", "3"),
        ("r/runs/[kind=a]/v :.1f", "1.5, 4.0"),
        ("r/runs/[kind=a,n=3]/0/v :.1f", "4.0"),
        ("r/runs/v/max :.1f", "4.0"),
        ("r/runs/v/min/*1000 :.0f", "1500"),
        ("r/runs/v/median :.1f", "2.5"),
        ("r/runs/len :d", "3"),
        ("r/d/@values/s/sum :d", "3"),
    ],
)
def test_lookup_steps(results, spec, text):
    assert make_results.lookup(results, spec, {}) == text


@pytest.mark.parametrize("spec", ["r/nothing :d", "missing/x :d", "r/runs/7/v :.1f", "r/name :d"])
def test_unfillable_placeholder_names_template_line(results, spec):
    with pytest.raises(make_results.RenderError, match=rf"^T\.md:2: \{{\{{{spec}\}}\}}: "):
        make_results.render("fine\nsee {{" + spec + "}} here\n", results, "T.md")


def test_gpu_section_says_no_run_without_files_and_renders_them_when_present(tmp_path):
    assert gpu_table(tmp_path).startswith("No device run recorded")
    (tmp_path / "gpu").mkdir()
    (tmp_path / "gpu" / "parity.json").write_text(json.dumps([{"model": "random-bert-base", "max_abs": 0.0012}]))
    shutil.copy(RESULTS / "extract-cpu.json", tmp_path / "gpu" / "extract-gpu.json")
    text = gpu_table(tmp_path)
    assert "| random-bert-base | 0.0012 |" in text
    assert "| minilm | naive transformers" in text and "No device run" not in text
