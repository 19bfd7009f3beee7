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


@pytest.mark.slow
def test_a_cached_export_runs_without_building_the_torch_model(tmp_path) -> None:
    """The torch module (transformers' modeling code and the weights: about 1.6 of a one-sentence extract's
    4.4 CPU seconds) is built only when something needs it: the first run exports and checks parity with it; a
    second run, its export and verdict cached, never builds it and stores the same maps."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    src = tmp_path / "in.txt"
    src.write_text("The cat sat on the mat.\nA second, longer sentence follows it here.\n", encoding="utf-8")
    code = (
        "import sys\n"
        "from attnx.engine.extract import extract\n"
        "from attnx.engine.run import ExtractOptions\n"
        "s = extract(ExtractOptions(input=sys.argv[1], output=sys.argv[2]))\n"
        "print(s.backend, 'transformers.modeling_utils' in sys.modules)\n"
    )
    env = {**os.environ, "ATTNX_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1"}
    outs = []
    for k in range(2):
        store = tmp_path / f"s{k}.zarr"
        done = subprocess.run([sys.executable, "-c", code, str(src), str(store)], capture_output=True, text=True,
                              env=env, check=False)
        assert done.returncode == 0, done.stderr[-2000:]
        outs.append(done.stdout.split()[-2:])
    assert outs == [["onnx", "True"], ["onnx", "False"]], outs
    from attnx.store import open_store

    a, b = open_store(tmp_path / "s0.zarr"), open_store(tmp_path / "s1.zarr")
    for i in range(len(a)):
        assert (a.attention(i) == b.attention(i)).all()
        assert (a.token_ids(i) == b.token_ids(i)).all()
    assert a.attrs["tokenizer"] == b.attrs["tokenizer"] and a.attrs["model"] == b.attrs["model"]

    # the attnx command itself, export, verdict and model card cached: neither torch nor transformers is imported
    cli = (
        "import atexit, sys\n"
        "atexit.register(lambda: print('imported:', 'torch' in sys.modules, 'transformers' in sys.modules))\n"
        "from attnx.cli.main import main\n"
        "main(['extract', sys.argv[1], '-o', sys.argv[2], '-q'])\n"
    )
    done = subprocess.run([sys.executable, "-c", cli, str(src), str(tmp_path / "s2.zarr")], capture_output=True,
                          text=True, env=env, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-3:] == ["imported:", "False", "False"], done.stdout
    c = open_store(tmp_path / "s2.zarr")
    assert all((a.attention(i) == c.attention(i)).all() for i in range(len(a)))


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


def test_torch_backend_builds_the_model_before_the_store_and_the_timer(tmp_path) -> None:
    """With the module built on first use, a torch run built it inside its first submit: after the store was
    created (weights that cannot load left an empty store behind), inside the timed loop and under inference
    mode. The torch backend builds it when it is made, and extract before it creates the store."""
    import torch
    from transformers import AutoModel, BertConfig

    from attnx.engine.backends.torch_backend import TorchBackend
    from attnx.engine.extract import extract
    from attnx.engine.model import load_model, minilm_path
    from attnx.engine.run import ExtractOptions
    from attnx.errors import AttnxError

    ckpt = tmp_path / "tiny"
    torch.manual_seed(0)
    AutoModel.from_config(BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                     intermediate_size=64)).save_pretrained(ckpt, safe_serialization=True)
    for f in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        if (minilm_path() / f).is_file():
            (ckpt / f).write_bytes((minilm_path() / f).read_bytes())
    loaded = load_model(str(ckpt))
    assert "model" not in loaded.__dict__  # not built by loading
    TorchBackend(loaded, [0, 1], [0, 1, 2, 3], "float16")
    assert "model" in loaded.__dict__  # built by making the backend
    (weights,) = ckpt.glob("*.safetensors")
    weights.write_bytes(weights.read_bytes()[:1000])  # the config and tokenizer still read; the weights do not
    src = tmp_path / "in.txt"
    src.write_text("One sentence here.\n", encoding="utf-8")
    out = tmp_path / "s.zarr"
    with pytest.raises(AttnxError, match="cannot load model"):
        extract(ExtractOptions(input=str(src), output=str(out), model=str(ckpt), backend="torch", device="cpu"))
    assert not out.exists()
