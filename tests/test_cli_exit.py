"""The command's process-level behaviour: hooks installed once per process, and the real exit path
(``attnx ...`` in a subprocess: exit status and one line on stderr, no traceback)."""

from __future__ import annotations

import atexit
import os
import subprocess
import sys
from pathlib import Path

import icechunk
import pytest
from click.testing import CliRunner
from helpers.stores import make_batches, written

import attnx
from attnx.cli import main as cli_main


def test_repeated_invocations_install_each_hook_once(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Every invocation added a log filter, an unraisable-hook wrapper and an exit function."""
    calls = []
    monkeypatch.setattr(icechunk, "set_logs_filter", calls.append)
    monkeypatch.setattr(sys, "unraisablehook", sys.unraisablehook)  # restored after the test
    monkeypatch.setattr(cli_main, "_store_noise_quieted", False, raising=False)
    exit_funcs = atexit._ncallbacks()
    runner = CliRunner()
    hooks = []
    for _ in range(3):
        result = runner.invoke(cli_main.main, ["info", str(tmp_path / "missing.zarr")])
        assert result.exit_code != 0 and "Traceback" not in result.output
        hooks.append(sys.unraisablehook)
    assert calls == ["icechunk=error"]
    assert hooks[0] is hooks[1] is hooks[2]
    assert atexit._ncallbacks() == exit_funcs + 1
    atexit.unregister(cli_main._settle_pending_reads)


def test_failure_path_settles_pending_reads(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A failed command leaves with os._exit, which skips the exit function written for it: the failure path
    must run it itself."""
    events = []

    class Exited(Exception):
        pass

    def fake_exit(code: int) -> None:
        events.append(("exit", code))
        raise Exited

    monkeypatch.setattr(cli_main, "_quiet_store_noise", lambda: None)  # the command's hooks: not this process's
    monkeypatch.setattr(cli_main, "_settle_pending_reads", lambda: events.append(("settle",)))
    monkeypatch.setattr(os, "_exit", fake_exit)
    with pytest.raises(Exited):
        cli_main.main(["info", str(tmp_path / "missing.zarr")], prog_name="attnx")
    assert events == [("settle",), ("exit", 1)]


def _attnx(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``attnx ARGS`` as a user runs it: the console script beside this interpreter, or ``python -m``."""
    script = Path(sys.executable).parent / "attnx"
    cmd = [str(script)] if script.is_file() else [sys.executable, "-m", "attnx.cli.main"]
    env = {**os.environ, "PYTHONPATH": str(Path(attnx.__file__).parents[1])}
    return subprocess.run([*cmd, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


def _one_line_error(done: subprocess.CompletedProcess, *words: str) -> str:
    assert done.returncode == 1, (done.returncode, done.stderr[-3000:])
    assert "Traceback" not in done.stderr and "panicked" not in done.stderr, done.stderr[-3000:]
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("Error: ") and all(w in lines[0] for w in words), lines[0]
    return lines[0]


def test_extract_of_a_missing_file_exits_1_with_one_line(tmp_path: Path) -> None:
    done = _attnx("extract", "missing.txt", "-o", "out.zarr", "--model", "random-bert-tiny", "-q", cwd=tmp_path)
    _one_line_error(done, "missing.txt")
    assert not (tmp_path / "out.zarr").exists()


def test_verify_of_a_corrupted_store_exits_1_with_one_line(tmp_path: Path) -> None:
    written(tmp_path / "s.zarr", make_batches(4, 3, 8, "float16"), "float16")
    chunk = max((tmp_path / "s.zarr" / "chunks").iterdir(), key=lambda f: f.stat().st_size)  # an attn chunk
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0xFF
    chunk.write_bytes(bytes(data))
    _one_line_error(_attnx("verify", "s.zarr", cwd=tmp_path), "s.zarr")
