"""Does a long torch run's live heap grow with the corpus? (issue 22: the ``--stats-only`` soak grew ~150 MB per 10^6)

Two measurements, each in fresh processes, with glibc's counters (``mallinfo2``: live bytes = in-use arena bytes +
mmapped blocks, after ``malloc_trim(0)`` where it says so) beside ``/proc`` RSS:

* ``shapes``: MiniLM forward passes (transformers, eager, torch CPU, 2 threads) on N distinct (batch, length) shapes
  such as length-sorted dynamic batches bring, then on M of them again; live heap after each, and seconds per
  phase; per oneDNN primitive-cache setting (``ONEDNN_PRIMITIVE_CACHE_CAPACITY``): torch's default (1,024), 128
  and 0 (no cache);
* ``extract``: ``attnx.extract`` (``--stats-only`` on torch, or the maps as q10 on torch or the default backend)
  over the first N records of an input, with the ``attnx`` command's heap setting (freed pages kept) or glibc's
  own, per oneDNN setting; live heap and RSS at every 4,096 records.

* ``commits``: the same over few records, with a commit after every small batch (hundreds of commits), under
  attnx's bounded Icechunk caches and under Icechunk's own defaults: the live heap per commit.

    python benchmarks/bench_heap_growth.py shapes --out benchmarks/results/heap_growth_shapes.json
    python benchmarks/bench_heap_growth.py extract --input corpus.txt --records 65536 --work /tmp/hg \\
        --out benchmarks/results/heap_growth_extract.json
    python benchmarks/bench_heap_growth.py commits --input corpus.txt --records 4096 --work /tmp/hg \\
        --out benchmarks/results/heap_growth_commits.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from attnx.benchkit import machine, write_result  # noqa: E402

ENV = "ONEDNN_PRIMITIVE_CACHE_CAPACITY"
SETTINGS = {"torch default 1024": None, "capacity 128": "128", "capacity 0": "0"}
# commits: Icechunk's snapshot and chunk-reference caches as attnx bounds them, or Icechunk's own defaults
CACHES = {"attnx bounded caches": None, "Icechunk default caches": "default"}


def heap(trim: bool = False) -> dict:
    """Live heap bytes (glibc) and RSS of this process, in MB."""
    from attnx.memory import heap_in_use, heap_trimmer

    if trim:
        heap_trimmer()()
    info = heap_in_use()
    if info is None:
        raise SystemExit("bench_heap_growth needs glibc 2.33 or later (mallinfo2)")
    out = {
        "live_mb": info["live"] / 2**20,
        "arena_mb": info["arena"] / 2**20,
        "free_in_arena_mb": info["free_in_arena"] / 2**20,
    }
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(("VmRSS", "RssAnon")):
            key, value = line.split(":")
            out[key.lower() + "_mb"] = int(value.split()[0]) / 1024
    return out


def _apply(setting: str | None, heap_setting: str) -> None:
    """The heap and oneDNN settings of one child, before its first forward pass."""
    from attnx.memory import keep_freed_heap_pages

    if heap_setting == "kept":
        keep_freed_heap_pages()  # as every attnx command runs
    os.environ.pop(ENV, None)
    if setting is not None:  # read by oneDNN when it builds its first primitive
        os.environ[ENV] = setting


def child_shapes(args: argparse.Namespace) -> dict:
    import random

    import torch
    from transformers import AutoModel

    from attnx.engine.model import minilm_path

    _apply(args.setting, args.heap)
    model = AutoModel.from_pretrained(str(minilm_path()), attn_implementation="eager").eval()
    torch.set_num_threads(2)
    shapes = [(b, l) for b in range(1, 17) for l in range(4, 80)]
    random.Random(0).shuffle(shapes)
    new, again = shapes[: args.shapes], shapes[: args.repeats]
    rows = []
    with torch.inference_mode():
        t0 = time.perf_counter()
        for k, (b, l) in enumerate(new + again, 1):
            ids = torch.randint(1000, 2000, (b, l))
            model(input_ids=ids, attention_mask=torch.ones_like(ids), output_attentions=True)
            if k == len(new):
                t_new = time.perf_counter() - t0
            if k % 100 == 0 or k == len(new):
                rows.append({"passes": k, "phase": "new" if k <= len(new) else "repeat", **heap(trim=True)})
        t_all = time.perf_counter() - t0
    return {
        "setting": args.setting,
        "heap": args.heap,
        "env": os.environ.get(ENV),
        "shapes": len(new),
        "repeats": len(again),
        "seconds_new": t_new,
        "seconds_repeat": t_all - t_new,
        "rows": rows,
    }


def _prefix_input(args: argparse.Namespace) -> Path:
    """The first ``--records`` lines of ``--input``, written once into ``--work``."""
    src = Path(args.work) / f"input-{args.records}.txt"
    if not src.is_file():
        with open(args.input, encoding="utf-8") as f, open(src, "w", encoding="utf-8") as g:
            for _, line in zip(range(args.records), f, strict=False):
                g.write(line)
    return src


def child_extract(args: argparse.Namespace) -> dict:
    _apply(args.setting, args.heap)
    from attnx.engine.extract import ExtractOptions, extract

    src = _prefix_input(args)
    rows, marks = [], iter(range(4096, 10**9, 4096))
    mark = [next(marks)]
    t0 = time.perf_counter()

    def progress(records: int, tokens: int, nbytes: int) -> None:
        while records >= mark[0]:
            rows.append({"records": records, "seconds": time.perf_counter() - t0, **heap()})
            mark[0] = next(marks)

    out = Path(args.work) / "store.zarr"
    import shutil

    shutil.rmtree(out, ignore_errors=True)
    if args.payload == "stats":
        opts = ExtractOptions(input=str(src), output=str(out), stats_only=True)
    else:  # the maps, stored as in the soak, through torch or the default backend
        opts = ExtractOptions(input=str(src), output=str(out), backend=args.backend, dtype="q10")
    summary = extract(opts, progress=progress)
    shutil.rmtree(out, ignore_errors=True)
    return {
        "setting": args.setting,
        "heap": args.heap,
        "payload": args.payload if args.payload == "stats" else f"maps ({summary.backend})",
        "env": os.environ.get(ENV),
        "records": summary.records,
        "backend": summary.backend,
        "rows": rows,
    }


def child_commits(args: argparse.Namespace) -> dict:
    _apply(None, args.heap)
    import dataclasses
    import shutil

    import attnx.store.writer as writer
    from attnx.config import load_config
    from attnx.engine.extract import ExtractOptions, extract
    from attnx.store import open_store

    if args.setting == "default":
        writer.SNAPSHOT_NODES_CACHED = writer.CHUNK_REFS_CACHED = None
    src = _prefix_input(args)
    # small batches (256 padded tokens) and a commit after every one of them
    cfg = dataclasses.replace(load_config(), cpu_max_batch_tokens=256, commit_bytes=1, commit_seconds=1e-6)
    rows: list[dict] = []
    t0 = time.perf_counter()

    def progress(records: int, tokens: int, nbytes: int) -> None:
        rows.append({"batches": len(rows) + 1, "records": records, "seconds": time.perf_counter() - t0, **heap()})

    out = Path(args.work) / "store.zarr"
    shutil.rmtree(out, ignore_errors=True)
    extract(ExtractOptions(input=str(src), output=str(out), stats_only=True, backend="torch"), progress, cfg)
    commits = len(open_store(str(out)).history())
    shutil.rmtree(out, ignore_errors=True)
    return {"caches": args.setting or "attnx", "records": args.records, "commits": commits, "rows": rows}


def slope(rows: list[dict], x: str, skip: int, per: float) -> float:
    """Least-squares slope of live heap MB per ``per`` of ``x`` over rows after the first ``skip``."""
    import numpy as np

    pts = rows[skip:]
    xs = np.array([r[x] for r in pts], float)
    ys = np.array([r["live_mb"] for r in pts], float)
    return float(np.polyfit(xs, ys, 1)[0] * per) if len(pts) > 1 else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("mode", choices=("shapes", "extract", "commits"))
    ap.add_argument("--shapes", type=int, default=600, help="shapes: distinct (batch, length) shapes")
    ap.add_argument("--repeats", type=int, default=300, help="shapes: passes on shapes seen before")
    ap.add_argument("--input", help="extract: a text corpus (one sentence per line)")
    ap.add_argument("--records", type=int, default=65536, help="extract: records to run")
    ap.add_argument("--work", default="/tmp/attnx-heap-growth", help="extract: folder for the input and the store")
    ap.add_argument("--settings", default=None, help="which oneDNN (or commits: cache) settings, comma-separated")
    ap.add_argument(
        "--heap",
        choices=("kept", "default"),
        default="kept",
        help="kept: glibc keeps freed pages, as every attnx command sets it; default: glibc's own [default: kept]",
    )
    ap.add_argument(
        "--payload",
        choices=("stats", "maps"),
        default="stats",
        help="extract: --stats-only, or the maps (torch backend, q10) [default: stats]",
    )
    ap.add_argument("--backend", choices=("torch", "auto"), default="torch", help="extract --payload maps: backend")
    ap.add_argument("--out", required=True)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--setting", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child = {"shapes": child_shapes, "extract": child_extract, "commits": child_commits}[args.mode]
        print(json.dumps(child(args)))
        return
    if args.mode in ("extract", "commits"):
        if not args.input:
            ap.error(f"{args.mode} needs --input")
        Path(args.work).mkdir(parents=True, exist_ok=True)
    settings = CACHES if args.mode == "commits" else SETTINGS
    runs = {}
    for name in (args.settings or ",".join(settings)).split(","):
        cmd = [
            sys.executable,
            __file__,
            args.mode,
            "--child",
            "--shapes",
            str(args.shapes),
            "--repeats",
            str(args.repeats),
            "--records",
            str(args.records),
            "--work",
            args.work,
            "--out",
            args.out,
            "--heap",
            args.heap,
            "--payload",
            args.payload,
            "--backend",
            args.backend,
        ]
        if args.input:
            cmd += ["--input", args.input]
        if settings[name] is not None:
            cmd += ["--setting", settings[name]]
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "HF_HUB_OFFLINE": "1"}
        env.pop(ENV, None)
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if done.returncode:
            raise SystemExit(f"{name}: child failed ({done.returncode}): {done.stderr[-2000:]}")
        run = json.loads(done.stdout.strip().splitlines()[-1])
        # the slope leaves out the first rows (start-up, the first windows in flight)
        x, skip, per, unit = {
            "shapes": ("passes", 1, 100, "100 new shapes"),
            "extract": ("records", 2, 1e5, "100,000 records"),
            "commits": ("batches", 20, 100, "100 commits"),
        }[args.mode]
        # extract, commits: up to the next to last row (the last batch is the run's end)
        rows = [r for r in run["rows"] if r["phase"] == "new"] if args.mode == "shapes" else run["rows"][:-1]
        run["live_mb_slope"] = slope(rows, x, skip, per)
        run["slope_per"] = unit
        runs[name] = run
        first, last = rows[skip]["live_mb"], rows[-1]["live_mb"]
        print(
            f"{name}: live heap {first:.0f} -> {last:.0f} MB from {rows[skip][x]:,} to {rows[-1][x]:,} {x} "
            f"({run['live_mb_slope']:+.2f} MB per {unit})",
            flush=True,
        )
    result = {"mode": args.mode, "machine": machine(), "command": " ".join(["python", *sys.argv]), "runs": runs}
    print(f"-> {write_result(args.out, result)}")


if __name__ == "__main__":
    main()
