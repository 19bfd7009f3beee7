"""Time to first record and whole-process time: ``attnx extract`` against a careful transformers script.

Each run is a fresh process, launched the same way for both (``python ...``), on 1, 1,000 and 4,541 UD EWT
sentences (dev, then train lines to make up 4,541); attnx and the script alternate within each round, sizes
inside rounds, ``--rounds`` rounds. Split of each run (seconds from the launch):

* ``startup``: until the first batch enters the model (attnx: ``run_windows`` is called; the script: inputs
  tokenized and sorted) - imports, model and session loads, backend choice, store creation;
* ``first_record``: until the first batch is written (attnx: handed to its writer; the script: its ``.npz``
  saved);
* ``loop``: the extraction loop; ``finish``: from the loop's end to the process's exit (attnx: draining the
  writer, the last commit, ``finish``; both: interpreter teardown);
* ``wall``: launch to exit, the user's wait.

attnx is timed through a small driver that wraps ``attnx.engine.extract.run_windows`` to take the timestamps and
then runs the ``attnx`` command itself (``attnx.cli.main.main``); the ONNX export cache is warmed by one
untimed run first (the default backend ``auto`` reuses its export and parity verdict). The baseline is
``benchmarks/baseline_careful.py``. Result: ``benchmarks/results/startup.json``.

``--compute-only`` also times attnx's backend alone over the largest input's batches (tokenized before the clock,
nothing stored: ``attnx.bench_workers.compute_only_seconds``, two passes in one fresh process), the floor under
attnx's loop.

``--before SRC`` adds an older tree's ``attnx extract`` (its ``src`` folder first on ``PYTHONPATH``) to every
round, its own caches warmed the same way: the A/B of a start-up change.

    python benchmarks/bench_startup.py --rounds 3
    python benchmarks/bench_startup.py --rounds 3 --before /tmp/attnx-before/src
    python benchmarks/bench_startup.py --rounds 1 --sizes 1,1000      # a quick check
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from attnx.benchkit import load1, machine, spread, write_result  # noqa: E402

EWT = Path(os.environ.get("ATTNX_SHARED_DATA", ROOT.parent / "shared" / "data")) / "ud_english_ewt"

DRIVER = r"""
import atexit, json, os, sys, time
T = {}
import attnx.engine.extract as E
real = E.run_windows
def timed(*args):
    T["loop_start"] = time.time()
    on_batch = args[-1]
    def first(done):
        T.setdefault("first_record", time.time())
        on_batch(done)
    try:
        return real(*args[:-1], first)
    finally:
        T["loop_end"] = time.time()
E.run_windows = timed
atexit.register(lambda: open(os.environ["ATTNX_BENCH_TIMES"], "w").write(json.dumps(T)))
from attnx.cli.main import main
main(sys.argv[1:])
"""


def make_inputs(work: Path, sizes: list[int]) -> dict[int, Path]:
    """``n`` -> a text file of the first ``n`` EWT sentences (dev, then train)."""
    lines = (EWT / "dev" / "sentences.txt").read_text(encoding="utf-8").splitlines()
    lines += (EWT / "train" / "sentences.txt").read_text(encoding="utf-8").splitlines()
    out = {}
    for n in sizes:
        path = work / f"ewt_{n}.txt"
        path.write_text("\n".join(lines[:n]) + "\n", encoding="utf-8")
        out[n] = path
    return out


def run(tool: str, src: Path, work: Path, before: Path | None = None) -> dict:
    """One fresh process of ``tool`` (attnx | before | careful) on ``src``: seconds from launch per phase."""
    out = work / f"out-{tool}"
    shutil.rmtree(out, ignore_errors=True)
    times = work / "times.json"
    times.unlink(missing_ok=True)
    path = before if tool == "before" else ROOT / "src"
    env = {**os.environ, "PYTHONPATH": str(path), "HF_HUB_OFFLINE": "1", "ATTNX_BENCH_TIMES": str(times)}
    if tool in ("attnx", "before"):
        cmd = [sys.executable, "-c", DRIVER, "extract", str(src), "-o", str(out)]
    else:
        cmd = [sys.executable, str(ROOT / "benchmarks" / "baseline_careful.py"), str(src), str(out)]
    t0 = time.time()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    t1 = time.time()
    if done.returncode:
        raise SystemExit(f"{tool} failed ({done.returncode}): {done.stderr[-2000:]}")
    marks = json.loads(times.read_text()) if tool != "careful" else json.loads(done.stdout.strip().splitlines()[-1])
    return {"wall": t1 - t0, "startup": marks["loop_start"] - t0, "first_record": marks["first_record"] - t0,
            "loop": marks["loop_end"] - marks["loop_start"], "finish": t1 - marks["loop_end"]}


COMPUTE_ONLY = r"""
import json, sys
from attnx.bench_workers import compute_only_seconds
sentences = open(sys.argv[1], encoding="utf-8").read().splitlines()
spec = {"model": "minilm", "backend": "onnx", "dtype": "float16", "warmup": 64}
print(json.dumps(compute_only_seconds(spec, sentences)))
"""


def compute_only(src: Path) -> list[float]:
    """Seconds of attnx's backend alone over ``src``'s batches, two passes (see the module docstring)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", COMPUTE_ONLY, str(src)], env=env, capture_output=True, text=True,
                          check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--sizes", default="1,1000,4541")
    ap.add_argument("--compute-only", action="store_true", help="also time the backend alone on the largest input")
    ap.add_argument("--before", default=None, help="an older tree's src folder, run in the same rounds")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "startup.json"))
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    before = Path(args.before).resolve() if args.before else None
    tools = ("attnx", "careful", "before") if before else ("attnx", "careful")
    work = Path(tempfile.mkdtemp(prefix="attnx-startup-"))
    try:
        inputs = make_inputs(work, sizes)
        # export, verdict, model card and numba caches warm, page cache filled
        warm = {t: run(t, inputs[sizes[0]], work, before) for t in tools if t != "careful"}
        runs: dict[str, dict[str, list[dict]]] = {str(n): {t: [] for t in tools} for n in sizes}
        load = [load1()]
        for r in range(args.rounds):
            for n in sizes:
                for tool in (tools if r % 2 == 0 else tools[::-1]):
                    runs[str(n)][tool].append(run(tool, inputs[n], work, before))
                load.append(load1())
        floor = {"sentences": sizes[-1], "seconds": compute_only(inputs[sizes[-1]])} if args.compute_only else None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    keys = ("wall", "startup", "first_record", "loop", "finish")
    summary = {}
    for n, by_tool in runs.items():
        s = {tool: {k: spread([x[k] for x in rs]) for k in keys} for tool, rs in by_tool.items()}
        s["careful_over_attnx_wall"] = spread([c["wall"] / a["wall"] for a, c in
                                              zip(by_tool["attnx"], by_tool["careful"], strict=True)])
        if before:
            s["before_over_attnx_wall"] = spread([b["wall"] / a["wall"] for a, b in
                                                 zip(by_tool["attnx"], by_tool["before"], strict=True)])
        summary[n] = s
    result = {"rounds": args.rounds, "sizes": sizes, "runs": runs, "summary": summary, "warm_up": warm,
              "before": str(before) if before else None, "compute_only": floor,
              "input": "UD EWT dev sentences, then train, first N lines", "load_1min": load, "machine": machine(),
              "when": time.strftime("%Y-%m-%d %H:%M:%S")}
    write_result(args.out, result)
    print(f"{args.rounds} rounds, load {min(load):.1f}-{max(load):.1f}; seconds from launch, median [min..max]")
    print(f"  {'sentences':>9s} {'tool':8s} " + " ".join(f"{k:>18s}" for k in keys))
    for n, s in summary.items():
        for tool in tools:
            cells = [f"{s[tool][k]['median']:.2f} [{s[tool][k]['min']:.1f}..{s[tool][k]['max']:.1f}]" for k in keys]
            print(f"  {n:>9s} {tool:8s} " + " ".join(f"{c:>18s}" for c in cells))
        v = s["careful_over_attnx_wall"]
        print(f"  {n:>9s} careful / attnx whole process: {v['median']:.2f}x [{v['min']:.2f}..{v['max']:.2f}]")
        if before:
            v = s["before_over_attnx_wall"]
            print(f"  {n:>9s} before / attnx whole process: {v['median']:.2f}x [{v['min']:.2f}..{v['max']:.2f}]")
    if floor:
        print(f"  backend alone on {floor['sentences']:,} sentences: " + ", ".join(f"{x:.2f}" for x in floor["seconds"])
              + " s (two passes)")


if __name__ == "__main__":
    main()
