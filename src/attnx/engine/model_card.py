"""What attnx needs to know about a checkpoint before it runs it, read once with transformers and then cached.

A run needs the checkpoint's config (its shape and family, recorded in the store), and its tokenizer. Reading
them with transformers imports transformers and, through its configuration module, torch: about 1.4 s of a
one-sentence ``attnx extract`` whose model runs in ONNX Runtime and never needs either. So the first run on a
checkpoint reads them with transformers, as always, and writes a :class:`ModelCard` (the config as transformers
reads it, the tokenizer's pipeline and special-token facts) to the user's cache; later runs read the card.

The card's name hashes every file of the checkpoint's folder that is not weights (config, tokenizer files,
anything else at its top level), the folder's path, and the versions of attnx, transformers and tokenizers: a
changed file or a new version reads the checkpoint with transformers again. The cache is ``$ATTNX_CACHE``, else
``$XDG_CACHE_HOME/attnx``, else ``~/.cache/attnx`` (``models/`` beside the ONNX exports' ``onnx/``); a cache
that cannot be written only means the next run reads the checkpoint with transformers again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from attnx._version import __version__
from attnx.engine.text_tokenizer import TextTokenizer

CARD_FORMAT = 2  # bump when what a card holds, or how it is read, changes
# weights are fingerprinted on their own (LoadedModel.weights_sha256); everything else in the folder is hashed
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".onnx", ".ot", ".gguf")
MAX_HASHED_FILE = 256 << 20  # a file this large is no config or tokenizer: its size and mtime stand for it


@dataclass(frozen=True)
class ModelCard:
    """A checkpoint as transformers reads it, without its weights."""

    config: dict  # the config with every default (transformers' ``to_json_string(use_diff=False)``)
    family: str  # config.model_type, a key of attnx.engine.model.FAMILIES
    num_layers: int
    num_heads: int
    token_types: bool  # the model is given token_type_ids
    tokenizer: TextTokenizer

    def to_dict(self) -> dict:
        return {**self.__dict__, "tokenizer": self.tokenizer.to_dict()}

    @classmethod
    def from_dict(cls, d: dict) -> ModelCard:
        return cls(**{**d, "tokenizer": TextTokenizer.from_dict(d["tokenizer"])})


def cache_root() -> Path:
    """The user's attnx cache folder: ``$ATTNX_CACHE``, else ``$XDG_CACHE_HOME/attnx``, else ``~/.cache/attnx``."""
    root = os.environ.get("ATTNX_CACHE")
    if root:
        return Path(root)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "attnx"


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return ""


def card_key(model_dir: Path) -> str:
    """sha256 of what a card is made from (see the module docstring)."""
    digest = hashlib.sha256()
    head = {"format": CARD_FORMAT, "path": str(model_dir.resolve()), "attnx": __version__,
            "transformers": _version("transformers"), "tokenizers": _version("tokenizers")}
    digest.update(json.dumps(head, sort_keys=True).encode())
    for file in sorted(p for p in model_dir.iterdir() if p.is_file() and not p.name.endswith(WEIGHT_SUFFIXES)):
        stat = file.stat()
        digest.update(f"\0{file.name}\0{stat.st_size}\0".encode())
        if stat.st_size > MAX_HASHED_FILE:
            digest.update(str(stat.st_mtime_ns).encode())
            continue
        with open(file, "rb") as fh:
            digest.update(hashlib.file_digest(fh, "sha256").digest())
    return digest.hexdigest()


def card_path(model_dir: Path, key: str) -> Path:
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in model_dir.resolve().name) or "model"
    return cache_root() / "models" / f"{name}-{key[:20]}.json"


def cached_card(model_dir: Path, read: Callable[[], ModelCard]) -> tuple[ModelCard, bool]:
    """``(card, was_cached)``: the cached card of ``model_dir``, or ``read()`` (transformers) written to the
    cache first. An unreadable or foreign card file is read again. A folder whose files cannot all be hashed (one
    unreadable, or gone while listed), or that changed while ``read()`` ran (a copy in progress), is read without
    the cache."""
    try:
        key = card_key(model_dir)
    except OSError:
        return read(), False
    path = card_path(model_dir, key)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        if record["key"] == key:
            return ModelCard.from_dict(record["card"]), True
    except Exception:  # noqa: BLE001 - missing, truncated, edited or from another format: read it again
        pass
    card = read()
    try:
        if card_key(model_dir) != key:
            return card, False
    except OSError:
        return card, False
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps({"key": key, "card": card.to_dict()}), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:  # a cache that cannot be written: the checkpoint is read with transformers again next time
        with contextlib.suppress(OSError):
            tmp.unlink()
    return card, False
