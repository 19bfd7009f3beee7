"""benchmarks/bench_million.py's arithmetic on commit series (pure; no run, no timing)."""

from __future__ import annotations

import sys

from helpers.paths import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
import bench_million as bm  # noqa: E402


def _commits(points: list[tuple[float, int]]) -> list[dict]:
    return [{"t": t, "records": r} for t, r in points]


def test_edge_rates_measure_each_span_inside_one_process() -> None:
    # before the kill: start-up until t=10, then 100 records/s; after: start-up again, then 50 records/s
    before = _commits([(10 + k, 100 * k) for k in range(7)])  # 0 .. 600
    after = _commits([(20 + 2 * k, 600 + 100 * k) for k in range(5)])  # 600 .. 1000
    rates = bm.edge_rates([{"commits": before}, {"commits": after}], 1000)
    assert rates["first_10pct_per_s"] == 100.0
    assert rates["last_10pct_per_s"] == 50.0
    assert rates["last_vs_first"] == 0.5


def test_sparse_commits_widen_the_span_and_one_commit_gives_no_rate() -> None:
    before = _commits([(5.0, 0), (10.0, 600), (14.0, 1000)])  # commits sparser than n/10
    rates = bm.edge_rates([{"commits": before}, {"commits": _commits([(3.0, 1000)])}], 1000)
    assert rates["first_10pct_per_s"] == 100.0 and rates["last_10pct_per_s"] is None
    assert rates["last_vs_first"] is None
