"""SIGKILL a real ``attnx extract`` process at several moments; resuming must give the same store."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers.paths import SAMPLE

from attnx.errors import StoreError
from attnx.store import open_store

pytestmark = pytest.mark.slow  # real extract processes killed and resumed

ENV = {
    **os.environ,
    "ATTNX_WINDOW_RECORDS": "24",
    "ATTNX_ATTN_CHUNK_ELEMS": "30000",
    "ATTNX_CPU_THREADS": "1",
    "ATTNX_CPU_ATTN_BUDGET_BYTES": str(2 << 20),
    "ATTNX_COMMIT_BYTES": "1",  # one Icechunk commit per batch, so kills land between and inside commits
}
ARRAYS = [
    "attn",
    "rec/input_id",
    "rec/attn_start",
    "rec/length",
    "rec/len_a",
    "rec/tok_start",
    "rec/line",
    "rec/truncated",
    "tok/ids",
    "tok/segment",
    "tok/special",
    "tok/punct",
    "tok/word",
    "index/position",
]


def extract_cmd(src: Path, out: Path) -> list[str]:
    return [
        sys.executable,
        "-c",
        "from attnx.cli.main import main; main()",
        "extract",
        str(src),
        "-o",
        str(out),
        "-q",
        "--backend",
        "torch",  # each of the many started-and-killed runs would pay onnx's start-up; auto resumes: test_backend_auto
        "--layers",
        "0-1",
    ]


def committed(out: Path) -> int:
    """Records in the newest commit, read as any reader would while the writer runs."""
    try:
        return open_store(out).commit.records
    except StoreError:
        return 0


def kill_after_commit(src: Path, out: Path, at_least: int, extra_delay: float) -> int:
    proc = subprocess.Popen(extract_cmd(src, out), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while committed(out) < at_least and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    time.sleep(extra_delay)  # die mid-batch / mid-chunk, not just after a commit
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return committed(out)


def test_sigkill_then_resume_equals_uninterrupted(tmp_path):
    lines = (SAMPLE / "sample.txt").read_text(encoding="utf-8").splitlines()[:150]
    src = tmp_path / "c.txt"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    ref, cut = tmp_path / "ref.zarr", tmp_path / "cut.zarr"
    subprocess.run(extract_cmd(src, ref), env=ENV, check=True, capture_output=True)

    first = kill_after_commit(src, cut, 1, 0.05)
    second = kill_after_commit(src, cut, first + 1, 0.13)
    assert 0 < first < 150 and first <= second < 150, (first, second)
    done = subprocess.run(extract_cmd(src, cut), env=ENV, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert f"resumed after {second}" in done.stdout or second == 0

    a, b = open_store(ref).group, open_store(cut).group
    for name in ARRAYS:
        np.testing.assert_array_equal(a[name][:], b[name][:], err_msg=name)
    assert a.attrs["attnx"]["commit"] == b.attrs["attnx"]["commit"]
    assert b.attrs["attnx"]["complete"] is True
    again = subprocess.run(extract_cmd(src, cut), env=ENV, capture_output=True, text=True)
    assert "already complete" in again.stdout
