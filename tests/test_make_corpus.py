"""tools/make_corpus.py: the soak's corpus is deterministic in its seed, distinct, and EWT-like in length."""

from __future__ import annotations

import hashlib
import sys

import pytest
from helpers.paths import ROOT, SHARED_DATA

sys.path.insert(0, str(ROOT / "tools"))
import make_corpus  # noqa: E402


@pytest.fixture(scope="module")
def data():
    missing = [rel for rel in make_corpus.SOURCES if not (SHARED_DATA / rel).is_file()]
    if missing:
        pytest.skip(f"../shared/data absent: {SHARED_DATA / missing[0]} not found (real-corpus test skipped)")
    return SHARED_DATA


def _write(tmp_path, name: str, n: int, seed: int, data) -> bytes:
    out = tmp_path / name
    assert make_corpus.main(["--n", str(n), "--seed", str(seed), "--output", str(out), "--data", str(data)]) == 0
    return out.read_bytes()


def test_same_seed_gives_byte_identical_output(tmp_path, data) -> None:
    a = _write(tmp_path, "a.txt", 10_000, 7, data)
    b = _write(tmp_path, "b.txt", 10_000, 7, data)
    c = _write(tmp_path, "c.txt", 10_000, 8, data)
    assert hashlib.sha256(a).digest() == hashlib.sha256(b).digest()
    assert a != c


def test_ten_thousand_sentences_are_distinct_and_ewt_like(tmp_path, data) -> None:
    lines = _write(tmp_path, "d.txt", 10_000, 1, data).decode("utf-8").splitlines()
    assert len(lines) == 10_000
    assert len(set(lines)) == 10_000
    assert all(line.strip() == line and line for line in lines)
    ewt = make_corpus.quantiles([len(s.split()) for s in make_corpus.read_sentences(data, make_corpus.LENGTHS_FROM)])
    got = make_corpus.quantiles([len(s.split()) for s in lines])
    for q in ("p25", "p50", "p75", "p95"):
        assert abs(got[q] - ewt[q]) <= 0.1 * ewt[q] + 1, (q, got, ewt)
    # spliced, not copied: most lines are not real sentences
    real = {s for rel in make_corpus.SOURCES for s in make_corpus.read_sentences(data, rel)}
    assert sum(line in real for line in lines) < 0.05 * len(lines)


def test_refuses_an_output_inside_the_repository(data) -> None:
    with pytest.raises(SystemExit):
        make_corpus.main(["--n", "5", "--output", str(ROOT / "corpus.txt"), "--data", str(data)])
    assert not (ROOT / "corpus.txt").exists()
