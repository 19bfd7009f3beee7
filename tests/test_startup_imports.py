"""Start-up: a command imports what it runs, not the whole package (``attnx extract`` never loads numba or the
analysis stack; ``attnx --help`` still lists every command)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from attnx.cli.main import COMMANDS, main


def test_extract_imports_no_numba_and_no_analysis_stack() -> None:
    code = (
        "import sys, click\n"
        "from attnx.cli.main import main\n"
        "main.get_command(click.Context(main), 'extract')\n"
        "import attnx.engine.extract, attnx.engine.backends.onnx_backend\n"
        "print(sorted(m for m in sys.modules if m == 'numba' or m.startswith(('attnx.kernels.', 'attnx.analysis'))"
        " and m != 'attnx.kernels.names'))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_help_lists_every_command_and_each_resolves() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for name in COMMANDS:
        assert f"  {name} " in result.output, name
        sub = CliRunner().invoke(main, [name, "--help"])
        assert sub.exit_code == 0 and f" {name} [OPTIONS]" in sub.output, (name, sub.output)


@pytest.mark.slow
def test_a_cached_onnx_export_is_chosen_without_importing_onnx(tmp_path) -> None:
    """The exporter needs onnx; a run whose export (and parity verdict) is cached does not import it."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    code = (
        "import sys\n"
        "from attnx.engine.model import load_model\n"
        "from attnx.engine.backend_choice import choose_backend\n"
        "choice = choose_backend('auto', load_model('random-bert-tiny', seed=0), [0, 1], [0, 1], 'float16')\n"
        "print(choice.backend, 'onnx' in sys.modules)\n"
    )
    env = {**os.environ, "ATTNX_CACHE": str(tmp_path)}
    first = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    again = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert first.stdout.split() == ["onnx", "True"], first.stdout + first.stderr  # exported: onnx was needed
    assert again.stdout.split() == ["onnx", "False"], again.stdout + again.stderr


def test_a_successful_command_runs_atexit_handlers_and_skips_interpreter_teardown() -> None:
    """Like the interpreter's exit it waits for non-daemon threads and runs atexit handlers; then it leaves."""
    code = (
        "import atexit\n"
        "class Finalised:\n"
        "    def __del__(self):\n"
        "        print('teardown', flush=True)\n"
        "keep = Finalised()\n"
        "atexit.register(lambda: print('atexit', flush=True))\n"
        "import threading, time\n"
        "threading.Thread(target=lambda: (time.sleep(0.5), print('thread done', flush=True))).start()\n"
        "from attnx.cli.main import main\n"
        "main(['--version'])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:3] == ["attnx, version 0.1.0", "thread done", "atexit"], out.stdout
    assert "teardown" not in out.stdout
