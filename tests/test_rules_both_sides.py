"""The library owns every rule: the same bad input gives the same error (and the same warning) from the Python API
as from the CLI, which only adds ``Error: `` / ``warning: `` (issue 18, item 1)."""

from __future__ import annotations

import warnings

import pytest
from click.testing import CliRunner
from helpers.paths import SAMPLE

import attnx
from attnx.analysis import AnalyzeParams, analyze_store
from attnx.cli.main import main
from attnx.errors import AttnxError, AttnxWarning

TINY = {"model": "random-bert-tiny"}
TINY_CLI = ("--model", "random-bert-tiny")


def cli(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def cli_error(*args: str) -> str:
    r = cli(*args)
    assert r.exit_code == 1, r.output
    lines = [x for x in r.output.splitlines() if x.startswith("Error: ")]
    assert len(lines) == 1, r.output
    return lines[0].removeprefix("Error: ")


def cli_warnings(*args: str) -> list[str]:
    r = cli(*args)
    assert r.exit_code == 0, r.output
    return [x.removeprefix("warning: ") for x in r.stderr.splitlines() if x.startswith("warning: ")]


def library_error(call, *args, **kw) -> str:  # noqa: ANN001
    with pytest.raises(AttnxError) as info:
        call(*args, **kw)
    return str(info.value)


def library_warnings(call, *args, **kw) -> list[str]:  # noqa: ANN001
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        call(*args, **kw)
    return [str(w.message) for w in seen if issubclass(w.category, AttnxWarning)]


@pytest.fixture(scope="module")
def text_store(tmp_path_factory):
    """A uint8 store of 12 text records, some cut to --max-length 8."""
    tmp = tmp_path_factory.mktemp("rules")
    src = tmp / "s.txt"
    lines = (SAMPLE / "sample.txt").read_text(encoding="utf-8").splitlines()[:9]
    src.write_text("\n".join(lines) + "\n" + "this sentence is certainly longer than eight wordpieces\n" * 3)
    out = tmp / "s.zarr"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AttnxWarning)
        attnx.extract(src, out, dtype="uint8", max_length=8, **TINY)
    return out


def test_empty_input(tmp_path):
    src = tmp_path / "empty.txt"
    src.write_text("")
    shell = cli_error("extract", src, "-o", tmp_path / "a.zarr", "-q", *TINY_CLI)
    python = library_error(attnx.extract, str(src), str(tmp_path / "b.zarr"), **TINY)
    assert shell.replace("a.zarr", "b.zarr") == python  # the message names the (empty) store written
    assert python.startswith(f"{src}: no records to extract (the input is empty)")


def test_max_length_below_two(tmp_path):
    src = SAMPLE / "sample.txt"
    shell = cli_error("extract", src, "-o", tmp_path / "a.zarr", "-q", "--max-length", "1", *TINY_CLI)
    python = library_error(attnx.extract, str(src), str(tmp_path / "a.zarr"), max_length=1, **TINY)
    assert shell == python == "--max-length 1: must be at least 2 (room for the special tokens)"


def test_zero_record_store(tmp_path):
    src = tmp_path / "empty.txt"
    src.write_text("")
    store = tmp_path / "e.zarr"
    cli("extract", src, "-o", store, "-q", *TINY_CLI)  # refused, but the empty store stays
    shell = cli_error("analyze", store, "--no-progress", "-o", tmp_path / "an")
    python = library_error(analyze_store, str(store))
    assert shell == python and "holds 0 records; nothing to analyse" in python
    assert library_error(attnx.analysis.features, str(store)) == python


def test_relations_alone_on_a_text_store(text_store, tmp_path):
    shell = cli_error("analyze", text_store, "--only", "relations", "--no-progress", "-o", tmp_path / "a")
    python = library_error(analyze_store, str(text_store), AnalyzeParams(only=("relations",)))
    assert shell == python and "relations need a CoNLL-U store" in python and "text input" in python
    # the notebook function refuses too, instead of an empty table
    assert library_error(attnx.analysis.relations, str(text_store)) == python


def test_relations_among_others_are_skipped_with_one_warning(text_store, tmp_path):
    only = ("features", "relations")
    shell = cli_warnings("analyze", text_store, "--only", ",".join(only), "--no-progress", "-o", tmp_path / "a")
    python = library_warnings(analyze_store, str(text_store), AnalyzeParams(only=only))
    assert shell == python
    assert any("relations skipped - they need a CoNLL-U store" in w for w in python)
    assert any("uint8 store" in w for w in python)  # quantisation: entropy is sensitive
    assert any("records were cut to --max-length at extraction" in w for w in python)
    assert not (tmp_path / "a" / "relations.csv").exists()


def test_default_analyses_skip_relations_silently(text_store, tmp_path):
    shell = cli_warnings("analyze", text_store, "--no-progress", "-o", tmp_path / "a")
    python = library_warnings(analyze_store, str(text_store))
    assert shell == python and not any("relations" in w for w in python)


def test_truncation_warning_on_extract(tmp_path):
    src = tmp_path / "long.txt"
    src.write_text("a short one\n" + "this sentence is certainly longer than eight wordpieces in all\n" * 3)
    shell = cli_warnings("extract", src, "-o", tmp_path / "a.zarr", "-q", "--max-length", "8", *TINY_CLI)
    python = library_warnings(attnx.extract, str(src), str(tmp_path / "b.zarr"), max_length=8, **TINY)
    assert shell == python
    assert python == [
        "3 of 4 records were longer than --max-length 8 and were cut (flagged in the store; attnx info counts "
        "them; --no-truncate refuses them instead)"
    ]


def test_ablation_of_another_family(tmp_path):
    from attnx.ablation.task_model import load_task_model

    data = tmp_path / "d.tsv"
    data.write_text("sentence\tlabel\n" + "".join(f"example {k} .\t{k % 2}\n" for k in range(20)))
    shell = cli_error(
        "ablate", "--model", "random-roberta-tiny", "--data", data, "--probe", "logistic", "-o", tmp_path / "o"
    )
    python = library_error(load_task_model, "random-roberta-tiny", "logistic")
    assert shell == python and "ablate and importance run BERT checkpoints only (this is roberta)" in python


def test_ablation_without_grid_or_head_sets(tmp_path):
    from attnx.ablation.configs import check_grid

    r = cli("ablate", *TINY_CLI, "--data", tmp_path / "d.tsv", "--no-grid", "-o", tmp_path / "o")
    assert r.exit_code == 2 and "Error: --no-grid needs at least one --heads set" in r.output
    python = library_error(check_grid, False, [])
    assert python == "--no-grid needs at least one --heads set"


def test_train_frac_out_of_range(tmp_path):
    from attnx.ablation.data import split_indices

    data = tmp_path / "d.tsv"
    data.write_text("sentence\tlabel\n" + "".join(f"example {k} .\t{k % 2}\n" for k in range(20)))
    r = cli("ablate", *TINY_CLI, "--data", data, "--probe", "logistic", "--train-frac", "1.5", "-o", tmp_path / "o")
    assert r.exit_code == 2 and "Error: --train-frac 1.5: must be between 0 and 1" in r.output
    assert library_error(split_indices, 20, 1.5, 0) == "--train-frac 1.5: must be between 0 and 1"
