"""Shared fixtures: the packaged MiniLM (attnx and transformers' eager copy) and one ONNX export cache for
the session. Paths and helpers that test modules import live in tests/helpers/."""

from __future__ import annotations

import os

import icechunk
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# attnx holds a lock for every local writer; Icechunk's warning about unlocked local commits is noise here
icechunk.set_logs_filter("icechunk=error")


@pytest.fixture(scope="session", autouse=True)
def attnx_cache(tmp_path_factory):
    """One ONNX export cache (and parity verdicts) for the whole session, never the user's ~/.cache: the default
    --backend auto exports each model/settings once per session and reuses it."""
    old = os.environ.get("ATTNX_CACHE")
    path = tmp_path_factory.mktemp("attnx-cache")
    os.environ["ATTNX_CACHE"] = str(path)
    yield path
    if old is None:
        os.environ.pop("ATTNX_CACHE", None)
    else:
        os.environ["ATTNX_CACHE"] = old


@pytest.fixture(scope="session")
def minilm():
    from attnx.engine.model import load_model

    return load_model("minilm")


@pytest.fixture(scope="session")
def eager_minilm():
    """transformers' own eager attention, fp32: the reference every backend is checked against."""
    from transformers import AutoModel

    from attnx.engine.model import minilm_path

    return AutoModel.from_pretrained(str(minilm_path()), attn_implementation="eager").eval()
