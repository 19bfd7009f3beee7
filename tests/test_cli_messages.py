"""No silent no-ops, honest progress: the CLI's errors, warnings and rates (exit code and message)."""

from __future__ import annotations

import re
import time

import pytest
from click.testing import CliRunner
from helpers.paths import SAMPLE

from attnx.cli.main import main

TINY = ("--model", "random-bert-tiny")


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def _error_line(r) -> str:  # noqa: ANN001
    lines = [x for x in r.output.splitlines() if x.startswith("Error:")]
    assert len(lines) == 1, r.output
    return lines[0]


@pytest.fixture(scope="module")
def text_store(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("msg")
    src = tmp / "s.txt"
    src.write_text("\n".join((SAMPLE / "sample.txt").read_text(encoding="utf-8").splitlines()[:20]) + "\n")
    out = tmp / "s.zarr"
    r = run("extract", str(src), "-o", str(out), "-q", *TINY, "--dtype", "uint8")
    assert r.exit_code == 0, r.output
    return out


def test_empty_input_is_an_error(tmp_path):
    src = tmp_path / "empty.txt"
    src.write_text("")
    out = tmp_path / "e.zarr"
    r = run("extract", str(src), "-o", str(out), "-q", *TINY)
    assert r.exit_code == 1
    assert "empty.txt: no records to extract (the input is empty)" in _error_line(r)
    # the (empty) store may stay; analysing it is an error too, not all-NaN tables
    r = run("analyze", str(out), "--no-progress")
    assert r.exit_code == 1
    assert "holds 0 records; nothing to analyse" in _error_line(r)
    assert not (tmp_path / "e.zarr.analysis" / "features.csv").exists()


def test_relations_on_a_text_store(text_store, tmp_path):
    r = run("analyze", str(text_store), "--only", "relations", "--no-progress", "-o", str(tmp_path / "a"))
    assert r.exit_code == 1
    assert "relations need a CoNLL-U store" in _error_line(r) and "text input" in _error_line(r)
    r = run("analyze", str(text_store), "--only", "features,relations", "--no-progress", "-o", str(tmp_path / "b"))
    assert r.exit_code == 0, r.output
    assert "warning:" in r.stderr and "relations skipped - they need a CoNLL-U store" in r.stderr
    assert (tmp_path / "b" / "features.csv").exists() and not (tmp_path / "b" / "relations.csv").exists()


def test_truncation_warns_with_counts(tmp_path):
    src = tmp_path / "long.txt"
    src.write_text("a short one\n" + "this sentence is certainly longer than eight wordpieces in all\n" * 3)
    out = tmp_path / "t.zarr"
    r = run("extract", str(src), "-o", str(out), "-q", *TINY, "--max-length", "8")
    assert r.exit_code == 0, r.output
    assert "warning: 3 of 4 records were longer than --max-length 8 and were cut" in r.stderr
    r = run("info", str(out))
    assert r.exit_code == 0 and "3 of 4 records were cut to --max-length 8" in r.stderr
    r = run("analyze", str(out), "--only", "features", "--no-progress")
    assert r.exit_code == 0 and "3 of 4 records were cut to --max-length" in r.stderr


def test_uint8_stores_warn_with_the_measured_shift(text_store, tmp_path):
    r = run("info", str(text_store))
    assert r.exit_code == 0
    assert "uint8 store: entropy and cls_entropy are sensitive to quantisation" in r.stderr
    assert "entropy up to 0.054 nats" in r.stderr and "cls_entropy up to 0.077 nats" in r.stderr
    r = run("analyze", str(text_store), "--only", "features,similarity", "--no-progress", "-o", str(tmp_path / "a"))
    assert r.exit_code == 0, r.output
    assert "entropy up to 0.054 nats" in r.stderr and "JS head similarity is sensitive" in r.stderr
    r = run("analyze", str(text_store), "--only", "patterns", "--no-progress", "-o", str(tmp_path / "b"))
    assert r.exit_code == 0 and "quantisation" not in r.stderr  # nothing sensitive asked for


def _last_bar(stderr: str, desc: str) -> str:
    frames = [f for f in re.split(r"[\r\n]", stderr) if f.strip().startswith(f"{desc}:")]
    assert frames, stderr
    return frames[-1]


def test_extract_bar_ends_with_the_summary_rates(tmp_path):
    src = tmp_path / "s.txt"
    src.write_text("\n".join((SAMPLE / "sample.txt").read_text(encoding="utf-8").splitlines()[:40]) + "\n")
    r = run("extract", str(src), "-o", str(tmp_path / "s.zarr"), *TINY, "--budget-mb", "0.2")
    assert r.exit_code == 0, r.output
    rates = re.search(r"s: (.* sent/s, .* tok/s, .* MB/s) of attention", r.stdout).group(1)
    last = _last_bar(r.stderr, "extract")
    assert rates in last and "100%" in last and "40/40" in last, (rates, last)


def test_analyze_bar_ends_with_the_summary_rates(text_store, tmp_path):
    r = run("analyze", str(text_store), "--only", "features", "-o", str(tmp_path / "a"))
    assert r.exit_code == 0, r.output
    rates = re.search(r"in [0-9.,]+ s \(([^)]* maps/s, [^)]* MB/s)\)", r.stdout).group(1)
    last = _last_bar(r.stderr, "analyze")
    assert rates in last and "100%" in last, (rates, last)


def test_rates_are_work_over_time_since_start():
    """A bar first updated long after its work began must not divide that work by a few microseconds."""
    from attnx.cli.progress import RateBar, per_s

    bar = RateBar(False, 100, "sent", "x", {"records": per_s("sent")})
    bar.start()
    time.sleep(0.2)
    bar.update(100, records=100)
    rate = float(bar.last_postfix.split()[0].replace(",", ""))
    assert rate <= 100 / 0.2 + 1e-6
    assert bar.finish(100, 4.0, records=100) == "25.0 sent/s"


def test_ablate_refuses_other_families(tmp_path):
    data = tmp_path / "d.tsv"
    data.write_text("sentence\tlabel\n" + "".join(f"example {k} .\t{k % 2}\n" for k in range(20)))
    r = run("ablate", "--model", "random-roberta-tiny", "--data", str(data), "--probe", "logistic", "-o",
            str(tmp_path / "o"))
    assert r.exit_code == 1
    assert "ablate and importance run BERT checkpoints only (this is roberta)" in _error_line(r)


def test_ablate_and_importance_bars_count_every_row(tmp_path):
    """The bar's total is known before the pass (configurations x eval examples) and is reached exactly;
    its last rate is the summary's."""
    data = tmp_path / "d.tsv"
    data.write_text("sentence\tlabel\n" + "".join(f"example number {k} here .\t{k % 2}\n" for k in range(24)))
    r = run("ablate", *TINY, "--data", str(data), "--probe", "logistic", "--bootstrap", "10", "-o", str(tmp_path / "a"))
    assert r.exit_code == 0, r.output
    total = (1 + 2 * 4 + 2) * 12  # (base + heads + layers) x eval examples (train-frac 0.5)
    last = _last_bar(r.stderr, "ablate")
    assert "100%" in last and f"{total}/{total} rows" in last, last
    rate = re.search(r"rows in [0-9.]+ s, ([0-9,.]+ rows/s)\)", r.stdout).group(1)
    assert rate in last
    assert "loading random-bert-tiny ..." in r.stderr and "fitting the probe: done in" in r.stderr
    r = run("importance", *TINY, "--data", str(data), "--probe", "logistic", "-o", str(tmp_path / "i"))
    assert r.exit_code == 0, r.output
    last = _last_bar(r.stderr, "importance")
    assert "100%" in last and f"{12 * 12}/{12 * 12} rows" in last, last


def test_rollout_bar_ends_with_the_summary_rate(tmp_path):
    src = tmp_path / "s.txt"
    src.write_text("\n".join((SAMPLE / "sample.txt").read_text(encoding="utf-8").splitlines()[:12]) + "\n")
    out = tmp_path / "r.zarr"
    assert run("extract", str(src), "-o", str(out), "-q", *TINY).exit_code == 0
    r = run("rollout", str(out))
    assert r.exit_code == 0, r.output
    rate = re.search(r"in [0-9.]+ s \(([^)]* records/s)\)", r.stdout).group(1)
    last = _last_bar(r.stderr, "rollout")
    assert rate in last and "100%" in last and "12/12" in last, (rate, last)
