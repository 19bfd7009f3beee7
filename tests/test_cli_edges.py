"""The edges a new user and an independent reliability test hit: each is a one-line error or works as documented
(symlinked stores are followed; outputs that cannot be written name the place and the -o hint; ATTNX_* values
out of range; a damaged older snapshot)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers.paths import SAMPLE

from attnx.cli.main import main
from attnx.config import load_config
from attnx.errors import AttnxError, StoreError
from attnx.store import open_store

MODEL = "random-bert-tiny"


def _one_line_error(result, *needles: str) -> None:  # noqa: ANN001
    assert result.exit_code == 1, result.output
    last = result.output.rstrip("\n").split("\n")[-1]
    assert last.startswith("Error: ") and "Traceback" not in result.output, result.output
    for needle in needles:
        assert needle in last, result.output


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("edges")
    src = d / "in.txt"
    src.write_text("\n".join((SAMPLE / "sample.txt").read_text(encoding="utf-8").splitlines()[:12]) + "\n")
    return src


def _extract(src: Path, out: Path, *args: str):  # noqa: ANN202
    return CliRunner().invoke(main, ["extract", str(src), "-o", str(out), "-m", MODEL, "--backend", "torch", "-q",
                                     *args])


@pytest.mark.parametrize(("name", "value"), [("WINDOW_RECORDS", "0"), ("WINDOW_RECORDS", "-5"),
                                             ("CPU_THREADS", "-2"), ("QUEUE_DEPTH", "0"),
                                             ("COMMIT_SECONDS", "nan"), ("TOKENIZE_AHEAD", "0")])
def test_out_of_range_environment_values_are_one_line_errors(corpus: Path, tmp_path: Path, name: str,
                                                             value: str) -> None:
    """ZeroDivisionError, ValueError, RuntimeError or IndexError tracebacks before."""
    result = CliRunner().invoke(main, ["extract", str(corpus), "-o", str(tmp_path / "s.zarr"), "-m", MODEL, "-q"],
                                env={f"ATTNX_{name}": value})
    _one_line_error(result, f"ATTNX_{name}={value!r}: must be")
    with pytest.raises(AttnxError):
        load_config(**{name.lower(): type(getattr(load_config(), name.lower()))(float(value))})


def test_output_in_proc_names_the_real_reason(corpus: Path) -> None:
    """It was refused as 'being written by another process'."""
    result = _extract(corpus, Path("/proc/attnx-test.zarr"))
    _one_line_error(result, "cannot write in /proc")
    assert "another process" not in result.output


def test_symlinked_stores_are_followed(corpus: Path, tmp_path: Path) -> None:
    """A dangling symlink as output made Icechunk panic; --overwrite on a symlinked store raised
    'Cannot call rmtree on a symbolic link'. Both now act on the folder the link points to."""
    link = tmp_path / "link.zarr"
    link.symlink_to(tmp_path / "target.zarr")  # dangling
    assert _extract(corpus, link).exit_code == 0
    assert link.is_symlink() and (tmp_path / "target.zarr").is_dir()
    assert len(open_store(link)) == 12
    result = _extract(corpus, link, "--overwrite", "--dtype", "float16")
    assert result.exit_code == 0, result.output
    assert link.is_symlink() and open_store(link).dtype == "float16"
    assert CliRunner().invoke(main, ["verify", str(link)]).exit_code == 0


def test_default_outputs_that_cannot_be_written_say_use_o(corpus: Path, tmp_path: Path) -> None:
    """analyze/show whose default output beside the store cannot be made raised OSError tracebacks."""
    store = tmp_path / "s.zarr"
    assert _extract(corpus, store).exit_code == 0
    (tmp_path / "s.zarr.analysis").write_text("a file where the default folder would go")
    _one_line_error(CliRunner().invoke(main, ["analyze", str(store), "--no-progress"]), "choose another place with -o")
    (tmp_path / "sub").write_text("a file")
    result = CliRunner().invoke(main, ["show", str(store), "3", "-o", str(tmp_path / "sub" / "m.png")])
    _one_line_error(result, "cannot write")
    assert "-o" not in result.output.split("cannot write")[1]  # the user chose this place: no hint to choose one


@pytest.mark.skipif(not hasattr(__import__("os"), "geteuid") or __import__("os").geteuid() == 0,
                    reason="root writes into read-only folders")
def test_read_only_store_folder(corpus: Path, tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    assert _extract(corpus, ro / "s.zarr").exit_code == 0
    ro.chmod(0o555)
    try:
        for args in (["analyze", str(ro / "s.zarr"), "--no-progress"], ["show", str(ro / "s.zarr"), "1"]):
            _one_line_error(CliRunner().invoke(main, args), "choose another place with -o")
    finally:
        ro.chmod(0o755)


def test_show_title_names_store_and_model(corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import attnx.render

    titles = []
    monkeypatch.setattr(attnx.render, "render_map", lambda *a, title="", **k: titles.append(title))
    store = tmp_path / "named.zarr"
    assert _extract(corpus, store).exit_code == 0
    assert CliRunner().invoke(main, ["show", str(store), "2", "-o", str(tmp_path / "m.png")]).exit_code == 0
    assert titles and "named.zarr" in titles[0] and MODEL in titles[0] and "record 2" in titles[0]
    # a (benign) 200,000-character model name: the title stays one short line (20 MB of it hung show)
    import icechunk
    import zarr

    from attnx.store import StoreLocation
    from attnx.store.validate import seal

    session = icechunk.Repository.open(StoreLocation.parse(store).storage()).writable_session("main")
    group = zarr.open_group(store=session.store, mode="r+")
    attrs = dict(group.attrs["attnx"])
    attrs["model"] = {**attrs["model"], "name": "m" * 200_000}
    group.attrs["attnx"] = seal(attrs)
    session.commit("a long model name")
    assert CliRunner().invoke(main, ["show", str(store), "2", "-o", str(tmp_path / "m.png")]).exit_code == 0
    assert len(titles[-1]) < 200


def test_deleted_parent_snapshot_is_a_one_line_error(corpus: Path, tmp_path: Path) -> None:
    """info and history() ended in an IcechunkError traceback; verify said the store was fine."""
    store = tmp_path / "s.zarr"
    assert CliRunner().invoke(main, ["extract", str(corpus), "-o", str(store), "-m", MODEL, "-q"],
                              env={"ATTNX_WINDOW_RECORDS": "4", "ATTNX_COMMIT_BYTES": "1"}).exit_code == 0
    snaps = sorted((store / "snapshots").iterdir(), key=lambda p: p.stat().st_mtime)
    assert len(snaps) >= 3
    snaps[1].unlink()  # an older one: the newest still opens
    with pytest.raises(StoreError, match="cannot read the commit history"):
        open_store(store).history()
    _one_line_error(CliRunner().invoke(main, ["info", str(store), "--history", "0"]), "commit history")
    _one_line_error(CliRunner().invoke(main, ["verify", str(store)]), "commit history")  # verify passed it
    shutil.rmtree(store)


def test_info_reads_only_the_newest_commits(corpus: Path, tmp_path: Path) -> None:
    """``attnx info`` read every snapshot back to the first: 3.1 s on the 10^6-record soak store with 637 commits
    against 1.2 s on its 8-commit prefix. Now it reads the newest ``--history`` (+1, to know whether there are
    more): with the oldest commit's snapshot deleted it still answers, and ``--history 0`` reaches the damage."""
    store = tmp_path / "s.zarr"
    assert CliRunner().invoke(main, ["extract", str(corpus), "-o", str(store), "-m", MODEL, "-q"],
                              env={"ATTNX_WINDOW_RECORDS": "2", "ATTNX_COMMIT_BYTES": "1"}).exit_code == 0
    snaps = sorted((store / "snapshots").iterdir(), key=lambda p: p.stat().st_mtime)
    assert len(snaps) >= 6
    full = CliRunner().invoke(main, ["info", str(store), "--history", "0", "--json"])
    assert full.exit_code == 0 and not json.loads(full.output)["history_truncated"]
    assert len(json.loads(full.output)["history"]) == len(snaps)
    snaps[1].unlink()  # the store's first commit
    two = CliRunner().invoke(main, ["info", str(store), "--history", "2"])
    assert two.exit_code == 0, two.output
    assert "newest 2 commits" in two.output and "attnx info --history 0" in two.output
    as_json = json.loads(CliRunner().invoke(main, ["info", str(store), "--history", "2", "--json"]).output)
    assert len(as_json["history"]) == 2 and as_json["history_truncated"]
    assert as_json["history"][0]["records"] == as_json["records"]
    _one_line_error(CliRunner().invoke(main, ["info", str(store), "--history", "0"]), "commit history")


def test_info_lists_a_commit_another_program_made(corpus: Path, tmp_path: Path) -> None:
    """A commit made on top of attnx's by another program (here: an array of the user's own) is the snapshot every
    reader opens, so ``info`` lists it with its message instead of hiding it; Icechunk's first, empty commit is left
    out, and "... and more" appears only when attnx commits were left out."""
    import icechunk
    import zarr

    store = tmp_path / "s.zarr"
    assert CliRunner().invoke(main, ["extract", str(corpus), "-o", str(store), "-m", MODEL, "-q"]).exit_code == 0
    repo = icechunk.Repository.open(icechunk.local_filesystem_storage(str(store)))
    session = repo.writable_session("main")
    zarr.open_group(session.store).create_array("user_notes", shape=(3,), dtype="int32")[:] = 1
    newest = session.commit("added my own notes")
    out = CliRunner().invoke(main, ["info", str(store)])
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    at = next(i for i, ln in enumerate(lines) if ln.strip().startswith("snapshots"))
    assert lines[at].endswith(f"newest {newest}") and "newest 3 commits" not in lines[at]
    assert "not an attnx commit: 'added my own notes'" in lines[at + 1] and lines[at + 1].endswith(newest)
    assert all("records (+" in ln for ln in lines[at + 2:]), lines[at:]
    assert not any("... and more" in ln for ln in lines)
    two = CliRunner().invoke(main, ["info", str(store), "--history", "2"]).output
    assert "newest 2 commits" in two and "... and more before these" in two


def test_extract_help_is_honest_and_unescaped() -> None:
    """--help printed '39%%' and promised a distributed store 'the same as without' (it differs by float16 steps)."""
    out = CliRunner().invoke(main, ["extract", "--help"], terminal_width=200).output
    assert "39% of float16" in out and "%%" not in out
    assert "The store is the same as without" not in out and "one step of the stored dtype" in out


def test_long_line_gives_no_transformers_length_warning(tmp_path: Path) -> None:
    """transformers warned 'Token indices sequence length is longer ...' although attnx cuts the record."""
    import subprocess
    import sys

    src = tmp_path / "long.txt"
    src.write_text("short one\n" + " ".join(["word"] * 700) + "\n", encoding="utf-8")
    r = subprocess.run([sys.executable, "-m", "attnx.cli.main", "extract", str(src), "-o", str(tmp_path / "s.zarr"),
                        "-m", MODEL, "--backend", "torch", "-q"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "Token indices sequence length" not in r.stderr, r.stderr
    assert open_store(tmp_path / "s.zarr").truncated.tolist() == [False, True]
