"""The click commands end to end: exit codes and one-line messages."""

from __future__ import annotations

import json

from click.testing import CliRunner
from helpers.paths import SAMPLE

from attnx.cli.main import main


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_extract_info_show(tmp_path):
    src = tmp_path / "p.tsv"
    src.write_text(
        "\n".join((SAMPLE / "sample_pairs.tsv").read_text(encoding="utf-8").splitlines()[:12]) + "\n", encoding="utf-8"
    )
    out = tmp_path / "p.zarr"
    r = run("extract", str(src), "-o", str(out), "--quiet", "--dtype", "uint8", "--layers", "0-2")
    assert r.exit_code == 0, r.output
    assert f"stored 12 records in {out}" in r.output
    r = run("info", str(out))
    assert r.exit_code == 0 and "records  12 (0 truncated)" in r.output and "uint8" in r.output
    assert "layers 0-2, heads 0-11" in r.output
    info = json.loads(run("info", str(out), "--json").output)
    assert info["records"] == 12 and info["compression_ratio"] > 1.0
    png = tmp_path / "m.png"
    r = run("show", str(out), "3", "--layer", "2", "--head", "7", "-o", str(png))
    assert r.exit_code == 0 and png.stat().st_size > 10_000
    r = run("show", str(out), "3", "--layer", "5")
    assert r.exit_code == 1 and "layer 5 head 0 not stored" in r.output
    r = run("show", str(out), "99")
    assert r.exit_code == 1 and "record 99 is not stored" in r.output
    r = run("extract", str(src), "-o", str(out), "--quiet", "--dtype", "uint8", "--layers", "0-2", "--json")
    assert json.loads(r.output)["status"] == "already complete"


def test_errors_are_one_line_with_nonzero_exit(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\nnot json\n', encoding="utf-8")
    cases = [
        (["extract", str(bad), "-o", str(tmp_path / "a.zarr"), "-q"], "bad.jsonl:2: invalid JSON"),
        (["extract", str(tmp_path / "missing.txt"), "-o", str(tmp_path / "b.zarr"), "-q"], "missing.txt: cannot open"),
        (
            ["extract", str(bad), "-o", str(tmp_path / "c.zarr"), "--model", str(tmp_path / "nomodel")],
            "model directory not found",
        ),
        (["extract", str(bad), "-o", str(tmp_path / "d.zarr"), "--layers", "0-9"], "--layers '0-9': 6 is outside 0..5"),
        (["info", str(tmp_path / "none.zarr")], "no attnx store here"),
    ]
    for args, message in cases:
        r = run(*args)
        assert r.exit_code == 1, (args, r.output)
        lines = [x for x in r.output.splitlines() if x.startswith("Error:")]
        assert len(lines) == 1 and message in lines[0], (args, r.output)


def test_stdin_gzip_roundtrip(tmp_path):
    import gzip

    data = "\n".join((SAMPLE / "sample.txt").read_text(encoding="utf-8").splitlines()[:8]) + "\n"
    blob = gzip.compress(data.encode())
    r = CliRunner().invoke(main, ["extract", "-", "-o", str(tmp_path / "s.zarr"), "-q", "--layers", "0"], input=blob)
    assert r.exit_code == 0, r.output
    from attnx.store import open_store

    store = open_store(tmp_path / "s.zarr")
    assert len(store) == 8 and store.attrs["input"]["path"] == "-"
