"""Where the tests find the repository, the packaged sample corpora and ../shared/data."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = ROOT.parent / "shared" / "data"
SAMPLE = ROOT / "src" / "attnx" / "data"


def shared_file(rel: str) -> Path:
    """A file of ../shared/data, or a clear skip when the folder is absent (tests must pass without it)."""
    path = SHARED_DATA / rel
    if not path.is_file():
        pytest.skip(f"../shared/data absent: {path} not found (real-corpus test skipped)")
    return path
