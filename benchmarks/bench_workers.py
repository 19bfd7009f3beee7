"""Two workers against one process with the defaults (issue 22, item 5): does every worker get work?

``attnx extract INPUT -o STORE`` (one process) against ``attnx extract INPUT -o STORE --workers 2`` (a local Dask
cluster, the shard size planned from the input's size), each a fresh process, alternating, on:

* the first N UD EWT sentences (dev, then train; default N = 3,541), and
* N sentences of ``tools/make_corpus.py`` (default 10^5, seed 1), built once in ``--work``.

Everything else is the CLI's default (model, backend ``auto``, float16, ``--shard-records`` unset). Reported per
size: whole-process seconds (what the user waits for, the cluster's start included), the run's own seconds and
sentences/s from ``--json`` (model loading excluded), the shard size the run planned (from the store's
attributes), and the speed-up per round (one process / two workers). The stores are deleted after each run.

    python benchmarks/bench_workers.py --work /tmp/attnx-workers --sizes 3541,100000 --rounds 3

``--split N`` splits the two workers' extra time at N sentences instead, each configuration a fresh process,
interleaved per round: both runs on the first 8 sentences (the cluster's fixed cost: its start, every worker's
imports, model and session), two workers with two shards of N / 2 (the per-shard costs, against the planned
shards) and one process.

    python benchmarks/bench_workers.py --work /tmp/attnx-workers --split 3541 --rounds 3 \\
        --out benchmarks/results/workers_split.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from bench_startup import EWT, make_inputs  # noqa: E402 - the same EWT inputs (dev, then train)

from attnx.benchkit import fmt, load1, machine, spread, write_result  # noqa: E402

EWT_MAX = 2001 + 12544  # dev + train lines: above this a size is built by the corpus generator


def work_folder(ap: argparse.ArgumentParser, path: str) -> Path:
    """``--work``, created; refused inside the repository (stores and inputs stay out of it)."""
    work = Path(path).resolve()
    if work.is_relative_to(ROOT):
        ap.error(f"--work {work}: inside the repository")
    work.mkdir(parents=True, exist_ok=True)
    return work


def make_input(work: Path, n: int) -> tuple[Path, str]:
    """A text file of ``n`` sentences and what it holds."""
    if n <= EWT_MAX:
        if not EWT.is_dir():
            raise SystemExit(f"{EWT}: not found (the real-data folder beside the repository)")
        return make_inputs(work, [n])[n], f"UD EWT dev, then train: first {n:,} lines"
    path = work / f"input-{n}.txt"
    if not path.is_file():
        cmd = [
            sys.executable,
            str(ROOT / "tools" / "make_corpus.py"),
            "--n",
            str(n),
            "--seed",
            "1",
            "--output",
            str(path),
        ]
        subprocess.run(cmd, check=True)
    return path, f"tools/make_corpus.py --n {n} --seed 1"


def run(
    src: Path,
    store: Path,
    workers: int,
    shard_records: int | None = None,
    extra: tuple[str, ...] = (),
    env_extra: dict[str, str] | None = None,
) -> dict:
    """One whole ``attnx extract`` process (``extra``: more options; ``env_extra``: more environment); its wall
    time, its ``--json`` summary and the planned shard size."""
    shutil.rmtree(store, ignore_errors=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "HF_HUB_OFFLINE": "1", **(env_extra or {})}
    cmd = [sys.executable, "-m", "attnx.cli.main", "extract", str(src), "-o", str(store), "--json", "-q", *extra]
    if workers > 1:
        cmd += ["--workers", str(workers)]
    if shard_records:
        cmd += ["--shard-records", str(shard_records)]
    load_before = load1()
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if done.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr[-2000:]}")
    summary = json.loads(done.stdout)
    import attnx

    dist = attnx.open_store(store).attrs.get("distributed") or {}
    shutil.rmtree(store, ignore_errors=True)
    return {
        "wall_s": wall,
        "run_s": summary["seconds"],
        "sentences_per_s": summary["sentences_per_s"],
        "records": summary["records"],
        "backend": summary["backend"],
        "batches": summary["batches"],
        "shard_records": dist.get("shard_records"),
        "load_before": load_before,
        "load_after": load1(),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", required=True, help="folder for the inputs and stores (outside the repository)")
    ap.add_argument("--sizes", default="3541,100000")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--rounds-large", type=int, default=None, help="rounds for sizes above 10^4 (default --rounds)")
    ap.add_argument("--split", type=int, default=None, help="split the two workers' extra time at N sentences")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "workers.json"))
    args = ap.parse_args(argv)
    work = work_folder(ap, args.work)
    if args.split:
        return split(work, args.split, args.rounds, args.out, argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    results = {}
    for n in sizes:
        src, what = make_input(work, n)
        rounds = args.rounds_large if (args.rounds_large and n > 10_000) else args.rounds
        runs: dict[str, list[dict]] = {"1 process": [], "2 workers": []}
        for r in range(rounds):
            order = (1, 2) if r % 2 == 0 else (2, 1)
            for w in order:
                key = "1 process" if w == 1 else "2 workers"
                runs[key].append(run(src, work / "store.zarr", w))
                x = runs[key][-1]
                print(
                    f"[{time.strftime('%H:%M:%S')}] n={n} round {r + 1} {key}: {x['wall_s']:.1f} s whole, "
                    f"{x['sentences_per_s']:.1f} sent/s in the run, shards {x['shard_records']}",
                    flush=True,
                )
        one, two = runs["1 process"], runs["2 workers"]
        results[str(n)] = {
            "input": what,
            "rounds": rounds,
            "runs": runs,
            "wall_s": {k: spread([x["wall_s"] for x in v]) for k, v in runs.items()},
            "sentences_per_s": {k: spread([x["sentences_per_s"] for x in v]) for k, v in runs.items()},
            "speedup_whole": spread([a["wall_s"] / b["wall_s"] for a, b in zip(one, two, strict=True)]),
            "speedup_run": spread([b["sentences_per_s"] / a["sentences_per_s"] for a, b in zip(one, two, strict=True)]),
            "shard_records": two[0]["shard_records"],
            "backend": {k: v[0]["backend"] for k, v in runs.items()},
        }
    result = {
        "part": "workers",
        "sizes": sizes,
        "results": results,
        "machine": machine(),
        "command": "python benchmarks/bench_workers.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    write_result(args.out, result)
    for n, s in results.items():
        print(f"n={int(n):,} ({s['input']}), {s['rounds']} rounds, 2-worker shards of {s['shard_records']} records")
        for k in ("1 process", "2 workers"):
            print(f"  {k:10s} whole {fmt(s['wall_s'][k])} s, run {fmt(s['sentences_per_s'][k])} sent/s")
        print(f"  speed-up whole process {fmt(s['speedup_whole'], 2)}x, in the run {fmt(s['speedup_run'], 2)}x")
    return 0


def split(work: Path, n: int, rounds: int, out: str, argv: list[str] | None) -> int:
    """Where two workers' extra whole-process time goes at ``n`` sentences (see the module's docstring)."""
    src, what = make_input(work, n)
    tiny, _ = make_input(work, 8)
    configs = {
        "1 process, 8 sentences": (tiny, 1, None),
        "2 workers, 8 sentences": (tiny, 2, None),
        f"1 process, {n:,}": (src, 1, None),
        f"2 workers, {n:,}, planned shards": (src, 2, None),
        f"2 workers, {n:,}, 2 shards": (src, 2, -(-n // 2)),
    }
    runs: dict[str, list[dict]] = {k: [] for k in configs}
    for r in range(rounds):
        for key in list(configs)[:: 1 if r % 2 == 0 else -1]:
            path, workers, shards = configs[key]
            runs[key].append(run(path, work / "store.zarr", workers, shards))
            x = runs[key][-1]
            print(
                f"[{time.strftime('%H:%M:%S')}] round {r + 1} {key}: {x['wall_s']:.1f} s whole, "
                f"shards {x['shard_records']}",
                flush=True,
            )
    wall = {k: spread([x["wall_s"] for x in v]) for k, v in runs.items()}
    keys = list(configs)

    def per_round(a: str, b: str) -> dict:
        return spread([x["wall_s"] - y["wall_s"] for x, y in zip(runs[a], runs[b], strict=True)])

    result = {
        "part": "workers_split",
        "n": n,
        "input": what,
        "rounds": rounds,
        "runs": runs,
        "wall_s": wall,
        "planned_shard_records": runs[keys[3]][0]["shard_records"],
        # per round: 2 workers minus 1 process on 8 sentences; planned shards minus two shards; and the whole gap
        "fixed_s": per_round(keys[1], keys[0]),
        "shards_s": per_round(keys[3], keys[4]),
        "gap_s": per_round(keys[3], keys[2]),
        "machine": machine(),
        "command": "python benchmarks/bench_workers.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    write_result(out, result)
    for k in keys:
        print(f"  {k:34s} whole {fmt(wall[k])} s")
    print(
        f"  gap {fmt(result['gap_s'])} s: cluster fixed {fmt(result['fixed_s'])} s, planned shards vs two "
        f"{fmt(result['shards_s'])} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
