"""Export an encoder to ONNX with the kept layers' attention probabilities as the only graph output.

The graph is traced (TorchScript exporter, ``dynamo=False``) through attnx's capture function
(``attnx.engine.capture``), so it has eager-attention semantics with the softmax in float32 whatever the
compute dtype. Its one output is

    attn  (layers_kept, batch, heads_kept, T, T)  in the store dtype (float32 | float16 | uint8 = round(p*255))

with dynamic ``batch`` and ``T``; cropping the padding and packing the ragged ``l x l`` maps is left to the
host (``attnx.engine.backends.onnx_backend``), which needs one copy per record. Layers after the last
kept one and the pooler are not in the graph (their outputs are unused, the exporter drops them).

Exports are cached under a name that hashes everything that changes the graph: model weights sha256,
kept layers and heads, opset, compute and store dtypes, torch / onnx / attnx versions. The cache is the
user's: ``$ATTNX_CACHE/onnx``, else ``$XDG_CACHE_HOME/attnx/onnx``, else ``~/.cache/attnx/onnx``; never the
model's folder, which belongs to the user even when it is writable.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path

from attnx._version import __version__
from attnx.engine.model import LoadedModel
from attnx.engine.model_card import cache_root
from attnx.errors import AttnxError

OPSET = 17
EXPORT_FORMAT = 1  # bump when the graph's contract or this exporter changes
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
OUTPUT_NAME = "attn"


class OnnxExportError(AttnxError):
    """The model could not be exported to ONNX, or a cached export cannot be written or read."""


def export_key(loaded: LoadedModel, layers: list[int], heads: list[int], store_dtype: str, opset: int = OPSET) -> dict:
    """Everything that determines the exported graph (hashed into the file name). torch's and onnx's versions are
    read from their package metadata, not by importing them: a run that finds its export cached needs neither."""
    from importlib.metadata import version

    return {
        "format": EXPORT_FORMAT,
        "weights_sha256": loaded.weights_sha256,
        "config": loaded.config_dict,
        "layers": list(layers),
        "heads": list(heads),
        "opset": opset,
        "compute_dtype": loaded.compute,
        "store_dtype": store_dtype,
        "torch": version("torch"),
        "onnx": version("onnx"),
        "attnx": __version__,
    }


def cache_dir(loaded: LoadedModel) -> Path:
    """Where exports of ``loaded`` go: ``onnx/`` in the user's attnx cache (:func:`attnx.engine.model_card.cache_root`),
    whatever model it is; the file name tells models apart."""
    return cache_root() / "onnx"


def export_path(loaded: LoadedModel, layers: list[int], heads: list[int], store_dtype: str, opset: int = OPSET) -> Path:
    key = export_key(loaded, layers, heads, store_dtype, opset)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(loaded.name).name) or "model"
    return cache_dir(loaded) / f"{name}-{key['compute_dtype']}-{store_dtype}-{digest}.onnx"


def export_onnx(
    loaded: LoadedModel, layers: list[int], heads: list[int], store_dtype: str, path: Path, opset: int = OPSET
) -> Path:
    """Trace ``loaded.model`` and write the graph to ``path`` (atomically: temp file, then rename)."""
    if store_dtype not in ("float32", "float16", "uint8"):
        raise OnnxExportError(f"store dtype {store_dtype!r}: choose float32, float16 or uint8")
    from attnx.engine.onnx_trace import trace  # torch: only when exporting

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        trace(loaded, layers, heads, store_dtype, tmp, opset, INPUT_NAMES, OUTPUT_NAME)
        key = export_key(loaded, layers, heads, store_dtype, opset)
        record = {**key, "onnx_sha256": _file_sha256(tmp)}  # what it is, and the bytes a reuse must find
        side = path.with_suffix(".json")
        side_tmp = side.with_name(f".{side.name}.{os.getpid()}.tmp")
        side_tmp.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
        os.replace(tmp, path)
        os.replace(side_tmp, side)
    except OSError as exc:
        raise OnnxExportError(
            f"{path}: cannot write the ONNX export ({exc.strerror or exc}); set ATTNX_CACHE to a writable directory"
        ) from exc
    except Exception as exc:
        raise OnnxExportError(
            f"{loaded.name}: ONNX export failed ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
        ) from exc
    finally:
        tmp.unlink(missing_ok=True)
    return path


def ensure_onnx(
    loaded: LoadedModel, layers: list[int], heads: list[int], store_dtype: str, opset: int = OPSET
) -> tuple[Path, bool]:
    """The cached export for these settings, exporting it first if missing; returns (path, was_cached)."""
    path = export_path(loaded, layers, heads, store_dtype, opset)
    if path.is_file() and _cached_export_intact(path, export_key(loaded, layers, heads, store_dtype, opset)):
        return path, True
    return export_onnx(loaded, layers, heads, store_dtype, path, opset), False


def _file_sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _cached_export_intact(path: Path, key: dict) -> bool:
    """A cached export is reused only if its sidecar names these settings and the file's bytes hash to the
    sha256 recorded when it was exported; anything else (edited, truncated, foreign) is exported again."""
    try:
        record = json.loads(path.with_suffix(".json").read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(record, dict) or {k: record.get(k) for k in key} != key:
        return False
    try:
        stat = path.stat()
    except OSError:
        return False
    return record.get("onnx_sha256") == _export_sha256(str(path), stat.st_size, stat.st_mtime_ns, stat.st_ino)


@functools.lru_cache(maxsize=16)
def _export_sha256(path: str, size: int, mtime_ns: int, inode: int) -> str:
    """The export's sha256, hashed once per process and file version: a run checks its export twice (the backend
    choice, then the backend), 0.1 s each for MiniLM's."""
    return _file_sha256(Path(path))
