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

import hashlib
import json
import os
import warnings
from pathlib import Path

import torch

from attnx._version import __version__
from attnx.engine.model import LoadedModel
from attnx.errors import AttnxError

OPSET = 17
EXPORT_FORMAT = 1  # bump when the graph's contract or this exporter changes
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
OUTPUT_NAME = "attn"
TORCH_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16, "uint8": torch.uint8}


class OnnxExportError(AttnxError):
    """The model could not be exported to ONNX, or a cached export cannot be written or read."""


class AttentionOutputs(torch.nn.Module):
    """Wraps a BERT-family encoder: ``forward`` returns the kept layers' and heads' probabilities, nothing else.

    Returns ``(layers_kept, batch, heads_kept, T, T)`` in ``store_dtype``; padded key columns are 0,
    padded query rows are junk (the host crops them).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        layers: list[int],
        heads: list[int],
        n_heads: int,
        store_dtype: torch.dtype,
        token_types: bool = True,
    ) -> None:
        super().__init__()
        self.model = model
        self.token_types = token_types  # False: the model takes no token_type_ids (the input goes unused)
        self.layers = list(layers)
        self.heads = None if list(heads) == list(range(n_heads)) else torch.as_tensor(heads, dtype=torch.int64)
        self.store_dtype = store_dtype

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor
    ) -> torch.Tensor:
        got: dict[int, torch.Tensor] = {}

        def collect(layer_idx: int, probs: torch.Tensor) -> None:  # probs (batch, heads, T, T) fp32
            if layer_idx in self.layers:
                got[layer_idx] = probs

        from attnx.engine.capture import capturing  # transformers' modeling code: only when exporting

        extra = {"token_type_ids": token_type_ids} if self.token_types else {}
        with capturing(collect):
            self.model(input_ids=input_ids, attention_mask=attention_mask, **extra)
        attn = torch.stack([got[k] for k in self.layers], 0)  # (layers_kept, batch, heads, T, T)
        if self.heads is not None:
            attn = attn.index_select(2, self.heads.to(attn.device))  # (layers_kept, batch, heads_kept, T, T)
        if self.store_dtype == torch.uint8:
            return torch.round(attn * 255.0).to(torch.uint8)
        return attn.to(self.store_dtype)


def export_key(loaded: LoadedModel, layers: list[int], heads: list[int], store_dtype: str, opset: int = OPSET) -> dict:
    """Everything that determines the exported graph (hashed into the file name). onnx's version is read from
    its package metadata, not by importing it: a run that finds its export cached never needs onnx."""
    from importlib.metadata import version

    return {
        "format": EXPORT_FORMAT,
        "weights_sha256": loaded.weights_sha256,
        "config": loaded.config_dict,
        "layers": list(layers),
        "heads": list(heads),
        "opset": opset,
        "compute_dtype": str(loaded.dtype).removeprefix("torch."),
        "store_dtype": store_dtype,
        "torch": torch.__version__,
        "onnx": version("onnx"),
        "attnx": __version__,
    }


def cache_dir(loaded: LoadedModel) -> Path:
    """Where exports of ``loaded`` go: the user's cache folder (``$ATTNX_CACHE``, else
    ``$XDG_CACHE_HOME/attnx``, else ``~/.cache/attnx``), whatever model it is; the file name tells models apart."""
    root = os.environ.get("ATTNX_CACHE")
    if not root:
        root = str(Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "attnx")
    return Path(root) / "onnx"


def export_path(loaded: LoadedModel, layers: list[int], heads: list[int], store_dtype: str, opset: int = OPSET) -> Path:
    key = export_key(loaded, layers, heads, store_dtype, opset)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(loaded.name).name) or "model"
    return cache_dir(loaded) / f"{name}-{key['compute_dtype']}-{store_dtype}-{digest}.onnx"


def _example_inputs(device: torch.device, vocab_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Two records, one padded, so the traced mask path is the one that handles padding."""
    ids = torch.tensor([[101, 7592, 2088, 999, 102], [101, 7592, 102, 0, 0]], dtype=torch.int64, device=device)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], dtype=torch.int64, device=device)
    return ids % vocab_size, mask, torch.zeros_like(ids)


def export_onnx(
    loaded: LoadedModel, layers: list[int], heads: list[int], store_dtype: str, path: Path, opset: int = OPSET
) -> Path:
    """Trace ``loaded.model`` and write the graph to ``path`` (atomically: temp file, then rename)."""
    if store_dtype not in ("float32", "float16", "uint8"):
        raise OnnxExportError(f"store dtype {store_dtype!r}: choose float32, float16 or uint8")
    wrapper = AttentionOutputs(
        loaded.model, layers, heads, loaded.num_heads, TORCH_DTYPES[store_dtype], token_types=loaded.token_types
    ).eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    axes = {name: {0: "batch", 1: "T"} for name in INPUT_NAMES}
    axes[OUTPUT_NAME] = {1: "batch", 3: "T", 4: "T"}
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                wrapper,
                _example_inputs(loaded.device, int(loaded.model.config.vocab_size)),
                str(tmp),
                dynamo=False,
                opset_version=opset,
                input_names=list(INPUT_NAMES),
                output_names=[OUTPUT_NAME],
                dynamic_axes=axes,
                do_constant_folding=True,
            )
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
    sha = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 24), b""):
            sha.update(block)
    return sha.hexdigest()


def _cached_export_intact(path: Path, key: dict) -> bool:
    """A cached export is reused only if its sidecar names these settings and the file's bytes hash to the
    sha256 recorded when it was exported; anything else (edited, truncated, foreign) is exported again."""
    try:
        record = json.loads(path.with_suffix(".json").read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(record, dict) or {k: record.get(k) for k in key} != key:
        return False
    return record.get("onnx_sha256") == _file_sha256(path)
