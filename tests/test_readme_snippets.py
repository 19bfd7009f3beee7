"""Every ```python block of the README runs as written, on a real store extracted from a small CoNLL-U file
(the without-attnx recipe is run in its own process by test_store_safety)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers.paths import SAMPLE

ROOT = Path(__file__).resolve().parents[1]


def readme_python_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = [b.split("```", 1)[0] for b in text.split("```python\n")[1:]]
    return [b for b in blocks if "icechunk.Repository.open" not in b]  # the recipe: see test_store_safety


def conllu(lines: list[str]) -> str:
    out = []
    for k, line in enumerate(lines):
        words = line.split()[:12] or ["empty"]
        out.append(f"# sent_id = {k}")
        for i, w in enumerate(words, 1):
            out.append("\t".join([str(i), w, "_", "X", "_", "_", "0" if i == 1 else "1", "root" if i == 1 else "dep",
                                  "_", "_"]))
        out.append("")
    return "\n".join(out) + "\n"


@pytest.mark.slow
def test_readme_python_blocks_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = readme_python_blocks()
    assert len(blocks) >= 2
    lines = (SAMPLE / "sample.txt").read_text(encoding="utf-8").splitlines()[:24]
    (tmp_path / "corpus.conllu").write_text(conllu(lines), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ATTNX_WINDOW_RECORDS", "16")
    order = sorted(blocks, key=lambda b: "attnx.extract(" not in b)  # the block that makes the store first
    for block in order:
        exec(compile(block.replace('"corpus.txt"', '"corpus.conllu"'), "README.md", "exec"), {})
    assert (tmp_path / "corpus.zarr").is_dir() and os.listdir(tmp_path / "corpus.zarr")
