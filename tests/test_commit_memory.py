"""A writer's memory does not grow with its commits (issue 22's soak: +150 MB over 637 commits of 10^6 sentences).

Icechunk caches every snapshot a repository object writes, and each attnx snapshot carries its nodes' attributes
(about 330 KB: the vocabulary), so a run that commits often held every one of them. Reproduced small: a commit
after every batch of two or three sentences, about a hundred commits, and glibc's live heap (``mallinfo2``) from
the first quarter of the run to its end (it rose about 0.5 MB per commit before the caches were bounded)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from helpers.paths import SAMPLE

from attnx.config import load_config
from attnx.engine.extract import ExtractOptions, extract
from attnx.memory import heap_in_use
from attnx.store import open_store


def test_live_heap_stays_flat_over_many_commits(tmp_path: Path) -> None:
    if heap_in_use() is None:
        pytest.skip("needs glibc 2.33 or later (mallinfo2) to read the live heap")
    src = tmp_path / "in.txt"
    src.write_text("".join(SAMPLE.joinpath("sample.txt").read_text(encoding="utf-8").splitlines(True)[:240]))
    cfg = dataclasses.replace(load_config(), cpu_max_batch_tokens=48, commit_bytes=1, commit_seconds=1e-6)
    live: list[tuple[int, int]] = []

    def progress(records: int, tokens: int, nbytes: int) -> None:
        live.append((records, heap_in_use()["live"]))

    store = tmp_path / "s.zarr"
    opts = ExtractOptions(input=str(src), output=str(store), model="random-bert-tiny", backend="torch")
    assert extract(opts, progress=progress, config=cfg).records == 240
    commits = len(open_store(str(store)).history())
    assert commits >= 80, commits
    quarter = next(b for r, b in live if r >= 60)
    growth_mb = (max(b for r, b in live if r >= 60) - quarter) / 2**20
    assert growth_mb < 15, f"live heap grew {growth_mb:.1f} MB over {commits} commits"


def test_heap_in_use_reads_glibc() -> None:
    info = heap_in_use()
    if info is None:
        pytest.skip("not glibc 2.33 or later: heap_in_use() is None there by design")
    assert info["live"] > 0 and info["arena"] >= info["free_in_arena"] >= 0
