"""``--backend auto``: the fastest backend whose maps keep the store's stated error bound.

The rule (one function, :func:`auto_rule`, so it reads in one place):

* CPU: ``onnx`` when onnxruntime (and onnx, for the export) import, the export succeeds and the exported
  graph passes the parity check below; else ``torch``. Measured on the 2-core EPYC (benchmarks/RESULTS.md):
  onnxruntime runs MiniLM about 1.3x the torch backend at the same maps.
* CUDA: ``torch`` unless this onnxruntime has the ``CUDAExecutionProvider`` (``onnxruntime-gpu``) AND the
  export passes the parity check AND it ran the check's batches faster than torch (best of 3 each, after a
  warm-up, device synchronised). No GPU measurement has shown onnxruntime-gpu ahead, so torch is the default.
* ``--stats-only`` and bfloat16 compute: ``torch`` (the onnx backend runs neither).

Parity check: the bundled sample (``Config.backend_parity_records`` sentences and pairs, length-sorted,
padded batches of 8) through the torch backend storing float32 (the reference: equal to transformers' eager
attention within 1e-5, tests/test_parity.py) and through the onnx backend storing the run's dtype, decoded
to float32. It passes when every element is within

    stored dtype's stated max abs error (attnx.stored_dtypes; 0 for float32) + compute slack

with a slack of 1e-5 for float32 compute (onnxruntime CPU matched torch within 7e-6 on MiniLM) and 2e-3 for
float16 compute (CUDA only; about four fp16 ulps at 0.5, unmeasured here). So an onnx store states the same
bound against fp32 attention as a torch store, up to the slack. A wrong graph (a tampered or mis-exported
file) is off by far more.

The verdict is cached beside the export as ``<export>.parity-<device>-<dtype>.json``, keyed by the export's
sha256 (itself keyed by weights, options and versions), onnxruntime's version, the tolerance and the check's
format, so it runs once per export, not once per run.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from attnx.engine.model import LoadedModel
from attnx.errors import AttnxError
from attnx.stored_dtypes import decode, stored_dtype

log = logging.getLogger(__name__)

BACKENDS = ("auto", "torch", "onnx")
# what auto runs where a caller does not resolve it per run: the Dask scale-out's workers on an existing cluster
# or on GPUs, which may sit on different machines and must all run one backend so that one store never mixes two
# (a local cluster of CPU workers has its coordinator resolve auto instead: ScaleOptions.resolve_auto)
UNRESOLVED_AUTO = "torch"
PARITY_FORMAT = 1  # bump when the check (sample, batches, comparison) changes
COMPUTE_SLACK = {"float32": 1e-5, "float16": 2e-3}
PARITY_BATCH = 8
PARITY_MAX_LENGTH = 128
SAMPLE_DIR = Path(__file__).resolve().parents[1] / "data"


@dataclass(frozen=True)
class ParityVerdict:
    """The onnx export's maps against the torch backend's float32 maps on the bundled sample."""

    passed: bool
    max_abs_error: float  # max over every kept element of |decode(onnx stored) - torch float32|
    tolerance: float  # stored dtype's stated bound + compute slack
    records: int  # sample records compared
    store_dtype: str
    device: str  # "cpu" | "cuda"
    seconds: float  # the check's own time (both backends, comparison), not the export
    onnx_seconds: float | None = None  # CUDA only: best of 3 over the check's batches
    torch_seconds: float | None = None

    @property
    def onnx_faster(self) -> bool:
        if self.onnx_seconds is None or self.torch_seconds is None:
            return False
        return self.onnx_seconds < self.torch_seconds

    def to_attrs(self) -> dict:
        """JSON-safe dict for a store's attributes."""
        return {k: (float(f"{v:.6g}") if isinstance(v, float) else v) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class Choice:
    """The backend that will run and why; ``verdict`` when a parity check decided it."""

    backend: str  # "torch" | "onnx"
    reason: str
    verdict: ParityVerdict | None = None


def parity_tolerance(store_dtype: str, compute_dtype: str) -> float:
    """Max abs difference allowed between onnx stored maps (decoded) and torch float32 maps."""
    return stored_dtype(store_dtype).max_abs_error + COMPUTE_SLACK.get(compute_dtype, COMPUTE_SLACK["float16"])


def auto_rule(device_type: str, ort_cuda: bool, verdict: ParityVerdict | None) -> tuple[str, str]:
    """The ``auto`` decision once the facts are known: (backend, reason).

    ``ort_cuda``: onnxruntime has the CUDA provider; ``verdict``: the parity check (None: it could not run).
    """
    if verdict is None:
        return "torch", "no parity verdict"
    if not verdict.passed:
        return "torch", (
            f"onnx export failed the parity check (max abs error {verdict.max_abs_error:.3g} > "
            f"{verdict.tolerance:.3g} on {verdict.records} sample records)"
        )
    if device_type == "cuda":
        if not ort_cuda:
            return "torch", "onnxruntime has no CUDA provider (onnxruntime-gpu is not installed)"
        if not verdict.onnx_faster:
            return "torch", (
                f"onnxruntime-gpu was not faster on the sample ({verdict.onnx_seconds} s vs torch "
                f"{verdict.torch_seconds} s)"
            )
        return "onnx", "onnxruntime-gpu passed the parity check and was faster on the sample"
    worst, tol = verdict.max_abs_error, verdict.tolerance
    return "onnx", f"onnx passed the parity check (max abs error {worst:.3g} <= {tol:.3g})"


def choose_backend(
    requested: str,
    loaded: LoadedModel,
    layers: list[int],
    heads: list[int],
    store_dtype: str,
    stats_only: bool = False,
    recorded: str | None = None,
    parity_records: int = 24,
) -> Choice:
    """Resolve ``requested`` (auto | torch | onnx) to the backend that runs.

    ``recorded``: the backend an existing store was made with; ``auto`` resumes with it, so a resumed store
    holds the same bytes as one made in one run (an explicit other backend is refused by the resume check).
    Under ``auto`` every reason not to use onnx is logged as one line and torch runs.
    """
    if requested not in BACKENDS:
        raise AttnxError(f"--backend {requested!r}: choose {', '.join(BACKENDS)}")
    if requested != "auto":
        return Choice(requested, "asked for")
    if recorded == "onnx":  # resume on onnx only while its export still passes the check
        try:
            verdict = parity_verdict(loaded, layers, heads, store_dtype, parity_records)
        except Exception as exc:  # noqa: BLE001 - reported in one line
            verdict, why = None, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        else:
            why = f"max abs error {verdict.max_abs_error:.3g} > {verdict.tolerance:.3g}"
        if verdict is None or not verdict.passed:
            raise AttnxError(
                f"the store being resumed was made with --backend onnx, which cannot run or fails its parity check "
                f"here ({why}); resume where onnx works (pip install 'attnx[onnx]'), or start again with --overwrite"
            )
        return Choice("onnx", "the store being resumed was made with it", verdict)
    if recorded:
        return Choice(recorded, "the store being resumed was made with it")
    if stats_only:
        return Choice("torch", "--stats-only runs on torch")
    if loaded.compute == "bfloat16":
        return Choice("torch", "bfloat16 compute runs on torch")
    try:
        # the exporter needs onnx, but only when it exports: find it without importing it (with ml_dtypes it
        # cost every run about 0.4 s of start-up although a cached export never uses it)
        if importlib.util.find_spec("onnx") is None:
            raise ImportError("No module named 'onnx'")
        import onnxruntime as ort
    except ImportError as exc:
        return _fallback(f"onnxruntime is not installed ({exc}; pip install 'attnx[onnx]')")
    ort_cuda = "CUDAExecutionProvider" in ort.get_available_providers()
    if loaded.device_type == "cuda" and not ort_cuda:
        return Choice("torch", "onnxruntime has no CUDA provider (onnxruntime-gpu is not installed)")
    try:
        verdict = parity_verdict(loaded, layers, heads, store_dtype, parity_records)
    except Exception as exc:  # noqa: BLE001 - any export or runtime failure means: not onnx, say why
        first = str(exc).splitlines()[0] if str(exc) else ""
        return _fallback(f"onnx export or check failed ({type(exc).__name__}: {first})")
    backend, reason = auto_rule(loaded.device_type, ort_cuda, verdict)
    if backend == "torch":
        return _fallback(reason, verdict)
    return Choice(backend, reason, verdict)


def _fallback(reason: str, verdict: ParityVerdict | None = None) -> Choice:
    log.warning("attnx: --backend auto runs torch: %s", reason)
    return Choice("torch", reason, verdict)


def parity_verdict(
    loaded: LoadedModel, layers: list[int], heads: list[int], store_dtype: str, records: int = 24
) -> ParityVerdict:
    """The cached verdict for this export, or run the check and cache it. Exports the model if needed."""
    import onnxruntime as ort

    from attnx.engine.backends.onnx_backend import GRAPH_DTYPES
    from attnx.engine.onnx_export import ensure_onnx

    graph_dtype = store_dtype if store_dtype in GRAPH_DTYPES else "float32"
    path, _ = ensure_onnx(loaded, layers, heads, graph_dtype)
    compute = loaded.compute
    key = {
        "format": PARITY_FORMAT,
        "onnx_sha256": json.loads(path.with_suffix(".json").read_text())["onnx_sha256"],
        "onnxruntime": ort.__version__,
        "store_dtype": store_dtype,
        "device": loaded.device_type,
        "tolerance": parity_tolerance(store_dtype, compute),
        "records": records,
    }
    cache = path.with_name(f"{path.stem}.parity-{loaded.device_type}-{store_dtype}.json")
    cached = _read_verdict(cache, key)
    if cached is not None:
        return cached
    verdict = run_parity_check(loaded, layers, heads, store_dtype, records)
    tmp = cache.with_name(f".{cache.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps({"key": key, "verdict": asdict(verdict)}, indent=1, sort_keys=True) + "\n")
        os.replace(tmp, cache)
    except OSError:  # a read-only cache still gives a verdict, it is just checked again next time
        tmp.unlink(missing_ok=True)
    return verdict


def _read_verdict(path: Path, key: dict) -> ParityVerdict | None:
    try:
        record = json.loads(path.read_text())
        if record["key"] != key:
            return None
        return ParityVerdict(**record["verdict"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def sample_texts(records: int) -> list[str | tuple[str, str]]:
    """Two thirds single sentences, one third pairs, from the bundled sample (never empty lines)."""
    singles = [s for s in (SAMPLE_DIR / "sample.txt").read_text(encoding="utf-8").splitlines() if s.strip()]
    pairs = [
        tuple(p.split("\t", 1))
        for p in (SAMPLE_DIR / "sample_pairs.tsv").read_text(encoding="utf-8").splitlines()
        if "\t" in p
    ]
    n_pairs = records // 3
    return singles[: records - n_pairs] + pairs[:n_pairs]


def run_parity_check(
    loaded: LoadedModel, layers: list[int], heads: list[int], store_dtype: str, records: int = 24
) -> ParityVerdict:
    """Run the sample through both backends and compare (see the module docstring)."""
    from attnx.engine.backends.onnx_backend import OnnxBackend
    from attnx.engine.backends.torch_backend import TorchBackend
    from attnx.engine.precision import _batches, _encode

    t0 = time.perf_counter()
    texts = sample_texts(records)
    pad = loaded.text_tokenizer.pad_id or 0
    batches = _batches(_encode(loaded.tokenizer, texts, PARITY_MAX_LENGTH), PARITY_BATCH, pad)
    reference = TorchBackend(loaded, layers, heads, "float32")
    candidate = OnnxBackend(loaded, layers, heads, store_dtype)
    worst = 0.0
    for batch in batches:
        want = reference.submit(batch).result().attn
        got = decode(candidate.submit(batch).result().attn, store_dtype)
        if got.shape != want.shape:
            worst = float("inf")
            break
        worst = max(worst, float(np.abs(got - want).max(initial=0.0)))
    timings: dict[str, float] = {}
    if loaded.device_type == "cuda":
        timings = {
            "onnx_seconds": _best_of(candidate, batches),
            "torch_seconds": _best_of(TorchBackend(loaded, layers, heads, store_dtype), batches),
        }
    reference.close()
    candidate.close()
    tolerance = parity_tolerance(store_dtype, loaded.compute)
    return ParityVerdict(
        passed=bool(worst <= tolerance),
        max_abs_error=worst,
        tolerance=tolerance,
        records=len(texts),
        store_dtype=store_dtype,
        device=loaded.device_type,
        seconds=time.perf_counter() - t0,
        **timings,
    )


def _best_of(backend: object, batches: list, repeats: int = 3) -> float:
    """Best wall time of running every batch to the host, after one warm-up pass (device synchronised)."""
    import torch

    best = float("inf")
    for k in range(repeats + 1):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for batch in batches:
            backend.submit(batch).result()
        torch.cuda.synchronize()
        if k:
            best = min(best, time.perf_counter() - t0)
    return best
