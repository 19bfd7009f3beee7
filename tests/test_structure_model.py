"""benchmarks/structure_model.py: the numba context-sort transform against its numpy/Python reference."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from helpers.paths import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
import structure_model as sm  # noqa: E402


def maps(rng: np.random.Generator, sides: list[int], levels: int) -> np.ndarray:
    parts = []
    for l in sides:
        p = rng.dirichlet(np.full(l, 0.3), size=l)  # rows summing to 1, many tiny values
        parts.append(np.rint(p * levels).astype(np.uint16).ravel())
    return np.concatenate(parts)


@pytest.mark.parametrize("sides", [[2], [1, 3, 2], [5, 17, 40, 9], [64]])
def test_numba_matches_reference(sides):
    rng = np.random.default_rng(len(sides))
    table = sm.bucket_table(1023)
    q = maps(rng, sides, 1023)
    s = np.asarray(sides, np.int64)
    perm_ref, counts_ref = sm.encode_ref(q, s, table)
    perm, counts = sm.encode(q, s, table)
    assert np.array_equal(perm, perm_ref) and np.array_equal(counts, counts_ref)
    assert np.array_equal(sm.decode_ref(perm_ref, counts_ref, s, table), q)
    assert np.array_equal(sm.decode(perm, counts, s, table), q)
    assert not np.array_equal(perm, q) or len(q) <= 4  # the transform really reorders


def test_awkward_values():
    table = sm.bucket_table(1023)
    s = np.array([3, 3], np.int64)
    for q in (np.zeros(18, np.uint16), np.full(18, 1023, np.uint16)):
        perm, counts = sm.encode(q, s, table)
        assert counts.sum() == 18
        assert np.array_equal(sm.decode(perm, counts, s, table), q)


def test_bucket_table():
    t = sm.bucket_table(1023)
    assert t[0] == 0 and t[1] == 1 and t[2] == 1 and t[3] == 2 and t[1023] == 10
    assert sm.bucket_table(65535).max() == sm.NB - 1
