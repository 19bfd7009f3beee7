"""pattern_classifier/block_candidates.py: the strict block score against its row-by-row twin and on hand-built maps."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from helpers.paths import ROOT

sys.path.insert(0, str(ROOT / "pattern_classifier"))
import block_candidates as bc  # noqa: E402


def _rows(p: np.ndarray) -> np.ndarray:
    return p / p.sum(axis=-1, keepdims=True)


@pytest.mark.parametrize(("l", "la"), [(6, 3), (13, 7), (30, 11)])
def test_strict_block_matches_reference_on_random_maps(l: int, la: int) -> None:
    maps = _rows(np.random.default_rng(l).random((4, l, l)) ** 4)
    got = bc.strict_block(maps, la)
    for m in range(len(maps)):
        np.testing.assert_allclose(got[m], bc.strict_block_ref(maps[m], la), rtol=1e-12, atol=1e-12)


def test_strict_block_separates_block_from_vertical_and_diagonal() -> None:
    l, la = 20, 9
    seg = np.arange(l) >= la
    special = np.zeros(l, bool)
    special[[0, la - 1, l - 1]] = True
    d = np.abs(np.arange(l)[:, None] - np.arange(l)[None, :])
    block = _rows(((seg[:, None] == seg[None, :]) & ~special[None, :] & (d > 1)).astype(float) + 1e-9)
    vertical = np.zeros((l, l))
    vertical[:, 0] = 1.0
    diagonal = _rows(np.eye(l, k=-1) + 1e-9)
    stripe = np.zeros((l, l))  # one content column in each segment: own-segment mass, but a column
    stripe[:la, 3] = 1.0
    stripe[la:, la + 3] = 1.0
    s = bc.strict_block(np.stack([block, vertical, diagonal, stripe]), la)
    assert s[0, 0] == pytest.approx(1.0) and s[0, 3] < 0.2 and bc.clean(s[0])
    assert s[1, 0] == pytest.approx(0.0) and s[1, 1] == pytest.approx(1.0)
    assert s[2, 0] < 1e-6 and s[2, 4] > 0.9 and not bc.clean(s[2])
    assert s[3, 0] > 0.5 and s[3, 3] > 0.4  # caught by col_top, not by the score
