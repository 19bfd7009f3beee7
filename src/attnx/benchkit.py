"""Shared plumbing of the benchmarks: the machine a figure was measured on, repetitions interleaved across
settings with the machine's load read around each, and median [min..max] summaries.

Used by :mod:`attnx.bench` (extraction) and the harnesses in ``benchmarks/``; every harness writes its
result file through :func:`write_result`, and ``benchmarks/make_results.py`` renders RESULTS.md from them.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

# SIMD features that decide kernel and matmul speed on x86 (the full flag list is stored as well)
KEY_FLAGS = ("avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_tile")


def lscpu() -> dict:
    """Model name and CPU flags as ``lscpu`` reports them (``{}`` where lscpu is missing)."""
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=False, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    fields = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    flags = fields.get("Flags", "").split()
    return {
        "model_name": fields.get("Model name", platform.processor()),
        "flags": flags,
        "key_flags": [f for f in KEY_FLAGS if f in flags],
    }


def load1() -> float:
    """The 1-minute load average (runnable processes, all users)."""
    return os.getloadavg()[0]


def machine(**extra: object) -> dict:
    """The machine and software a figure comes from: CPU model, cores, ``lscpu`` flags, versions, UTC time."""
    import numpy as np

    cpu = lscpu()
    info: dict = {
        "cpu": cpu.get("model_name") or platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "key_flags": cpu.get("key_flags", []),
        "lscpu_flags": cpu.get("flags", []),
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "when_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
    }
    for name in ("torch", "transformers", "zarr", "numba", "onnxruntime"):
        mod = sys.modules.get(name)
        if mod is not None:
            info[name] = getattr(mod, "__version__", "?")
    if "torch" in sys.modules:
        info["torch_threads"] = sys.modules["torch"].get_num_threads()
    info.update(extra)
    return info


def spread(values: Sequence[float]) -> dict:
    """``{"median", "min", "max", "n", "values"}`` of repeated measurements."""
    vals = [float(v) for v in values]
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals), "n": len(vals), "values": vals}


def fmt(s: dict | None, digits: int = 1, unit: str = "") -> str:
    """``median [min..max]`` of a :func:`spread`, or ``-``."""
    if not s:
        return "-"
    return f"{s['median']:,.{digits}f}{unit} [{s['min']:,.{digits}f}..{s['max']:,.{digits}f}]"


def interleave(
    settings: dict[str, Callable[[], dict]],
    rounds: int,
    warmup: bool = True,
    log: Callable[[str], None] | None = None,
    on_result: Callable[[dict[str, list[dict]]], None] | None = None,
    deadline: float | None = None,
) -> dict[str, list[dict]]:
    """Run every setting once per round, in the same order each round, ``rounds`` times.

    With ``warmup`` each setting first runs once untimed (compilation, caches, allocator). Each
    repetition's result dict gets ``round``, ``load_before`` and ``load_after`` (1-minute load average).
    ``on_result(results so far)`` runs after every repetition (a harness writes its partial result file there);
    ``deadline`` (``time.time()`` seconds): no round starts that would end after it at the pace of the
    slowest round so far (the first round always runs). Returns ``{setting: [result of round 0, 1, ...]}``.
    """
    if warmup:
        for name, fn in settings.items():
            if log:
                log(f"  warm-up {name}")
            fn()
    out: dict[str, list[dict]] = {name: [] for name in settings}
    slowest = 0.0
    for r in range(rounds):
        if deadline is not None and r and time.time() + slowest > deadline:
            if log:
                log(f"  stopping after {r} of {rounds} rounds: another would end past the deadline")
            break
        started = time.time()
        for name, fn in settings.items():
            before = load1()
            res = dict(fn())
            res.update({"round": r, "load_before": before, "load_after": load1()})
            out[name].append(res)
            if on_result:
                on_result(out)
            if log:
                log(f"  round {r + 1}/{rounds} {name}: " + ", ".join(
                    f"{k} {v:.4g}" for k, v in res.items() if isinstance(v, float) and not k.startswith("load")
                ) + f" (load {before:.1f} -> {res['load_after']:.1f})")
        slowest = max(slowest, time.time() - started)
    return out


def load_range(reps: dict[str, list[dict]] | list[dict]) -> list[float]:
    """``[min, max]`` of the loads read before and after every repetition."""
    rows = [r for v in reps.values() for r in v] if isinstance(reps, dict) else list(reps)
    loads = [r[k] for r in rows for k in ("load_before", "load_after") if k in r]
    return [min(loads), max(loads)] if loads else []


def run_in_tree(src: str, snippet: str, args: Sequence[str], what: str) -> dict:
    """Run ``snippet`` (``python -c``) with ``args`` in a fresh interpreter that imports attnx from the source tree
    ``src`` (an A/B of two trees); its last stdout line is its JSON result, whose ``source`` (``attnx.__file__``)
    must lie in ``src``. ``what`` names the run in errors."""
    env = {**os.environ, "PYTHONPATH": str(Path(src).resolve()), "HF_HUB_OFFLINE": "1"}
    res = subprocess.run([sys.executable, "-c", snippet, *args], env=env, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"{src}: the {what} run failed:\n{res.stderr[-2000:]}")
    out = json.loads(res.stdout.strip().splitlines()[-1])
    if not out["source"].startswith(str(Path(src).resolve())):
        raise SystemExit(f"{src}: the run imported attnx from {out['source']}, not from this tree")
    return out


def write_result(path: str | os.PathLike, data: dict) -> Path:
    """Write one harness's result file (JSON, 2-space indent, trailing newline); returns its path."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(data, indent=2) + "\n")
    return p
