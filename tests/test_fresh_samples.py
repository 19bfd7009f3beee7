"""The labelled samples in ``validation/`` never share a record: a fresh test sample is only a clean estimate of
the pattern classifier if none of its sentences was labelled (and so possibly trained on) before."""

from __future__ import annotations

import csv
import itertools
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ("pattern_labels.csv", "pattern_sample_v2.csv", "block_sample_v3.csv", "pattern_sample_v4.csv",
           "pattern_sample_v5.csv", "pattern_sample_v6.csv")


def records(name: str) -> set[tuple[str, int]]:
    with (ROOT / "validation" / name).open(encoding="utf-8") as f:
        return {(r["source"], int(r["line"])) for r in csv.DictReader(f)}


def test_samples_share_no_record() -> None:
    recs = {name: records(name) for name in SAMPLES}
    assert all(recs.values())
    for a, b in itertools.combinations(SAMPLES, 2):
        assert not recs[a] & recs[b], f"{a} and {b} share records: {sorted(recs[a] & recs[b])[:3]}"


def test_fresh_samples_have_both_strata_and_816_maps() -> None:
    for v in ("v4", "v5", "v6"):
        with (ROOT / "validation" / f"pattern_sample_{v}.csv").open(encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        assert len(rows) == 816 and len({r["item"] for r in rows}) == 816
        assert sum(r["stratum"] == "block_candidate" for r in rows) == 144


def test_a_reused_sample_store_must_come_from_the_pinned_backend(tmp_path: Path) -> None:
    """``extract_sample(..., backend=)`` refuses a store left in the work folder by another backend (its maps differ
    in the last bits, which moved a refit's weights by 0.024) instead of silently reusing it."""
    import sys

    import numpy as np
    import pytest
    from helpers.synth import synth_records, write_store

    sys.path.insert(0, str(ROOT / "pattern_classifier"))
    import render_label_maps as tool

    write_store(tmp_path / "sample.zarr", synth_records(np.random.default_rng(0), 3, 1, 2), 1, 2)
    with pytest.raises(SystemExit, match=r"sample\.zarr: extracted with an unrecorded backend, this sample "
                                         r"needs torch"):
        tool.extract_sample(tool.Sample([], []), tmp_path, backend="torch")
