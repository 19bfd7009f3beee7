"""Using attnx as a library leaves the caller's process as it was: environment, logging levels, torch threads,
matplotlib backend (checked in a fresh interpreter, so nothing imported earlier by the test session counts)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.paths import SAMPLE

SCRIPT = r"""
import json, logging, os, sys
import matplotlib
import torch
from transformers.utils import logging as hf_logging

def state():
    return {
        "env": dict(os.environ),
        "root_level": logging.getLogger().level,
        "transformers_verbosity": hf_logging.get_verbosity(),
        "transformers_bars": hf_logging.is_progress_bar_enabled(),
        "torch_threads": torch.get_num_threads(),
        "backend": matplotlib.rcParams._get_backend_or_none(),
        "numba_cache_env": os.environ.get("NUMBA_CACHE_DIR"),
    }

import torch._dynamo  # noqa: F401 - torch itself sets TORCHINDUCTOR_CACHE_DIR when its compiler is imported,
                      # which loading any transformers model does: not attnx's doing, so it happens before "before"
torch.set_num_threads(1)
before = state()
import attnx
from attnx import analysis
src, out, rep = sys.argv[1:4]
summary = attnx.extract(src, out, model="random-bert-tiny", device="cpu")
store = attnx.open_store(out)
store.attention(0)
analysis.features(store)
from attnx.analysis import AnalyzeParams, analyze_store, write_results
write_results(analyze_store(store, AnalyzeParams(only=("features", "patterns"))), rep + "/an", store)
from attnx.report import make_report
make_report(rep + "/an", rep + "/fig")
from attnx.render import render_map
render_map(store.attention(0)[0, 0], store.tokens(0), rep + "/map.png")
after = state()
print(json.dumps({"before": before, "after": after, "records": summary.records}))
"""


@pytest.mark.slow
def test_library_calls_leave_the_process_as_it_was(tmp_path: Path) -> None:
    src = tmp_path / "in.txt"
    src.write_text("\n".join((SAMPLE / "sample.txt").read_text(encoding="utf-8").splitlines()[:12]) + "\n")
    import attnx  # the fresh process imports the attnx under test, not whichever one is installed

    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "ATTNX_CPU_THREADS": "2",
           "PYTHONPATH": str(Path(attnx.__file__).parents[1])}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(src), str(tmp_path / "s.zarr"), str(tmp_path)],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(done.stdout.strip().splitlines()) == 1, done.stdout[:3000]  # the library printed nothing itself
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["records"] == 12
    before, after = result["before"], result["after"]
    assert after["env"] == before["env"], set(after["env"].items()) ^ set(before["env"].items())
    for key in ("root_level", "transformers_verbosity", "transformers_bars", "torch_threads", "backend"):
        assert after[key] == before[key], key
    assert (tmp_path / "fig").is_dir() and (tmp_path / "map.png").is_file()


def _open_store_in_fresh_process(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    from helpers.stores import make_batches, written

    import attnx

    store = tmp_path / "S.zarr"
    written(store, make_batches(3, 2, 4, "float16"), "float16")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONPATH": str(Path(attnx.__file__).parents[1]), **env}
    return subprocess.run(
        [sys.executable, "-c", "import sys, attnx; attnx.open_store(sys.argv[1]).attention(0)", str(store)],
        capture_output=True, text=True, env=env, timeout=300,
    )


def test_opening_a_store_prints_nothing(tmp_path: Path) -> None:
    """Icechunk's "LocalFileSystem storage is not safe for concurrent commits" block went to stdout, twice."""
    done = _open_store_in_fresh_process(tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (done.stdout, done.stderr) == ("", "")


def test_icechunk_log_setting_is_left_to_the_user(tmp_path: Path) -> None:
    done = _open_store_in_fresh_process(tmp_path, ICECHUNK_LOG="icechunk=warn")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "not safe for concurrent commits" in done.stdout
