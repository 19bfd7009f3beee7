"""The million-sentence soak (issue 22): one machine, MiniLM, 10^6 distinct sentences, end to end.

Longer than most files: the soak is one resumable command, and its steps share the store watcher, the
subprocess accounting and the ``partial.json`` record that ``--continue`` reads.

One command runs every step, each as its own process (the way a user runs them), and writes
``benchmarks/results/million.json`` (``million_smoke.json`` for ``--n`` below 10^6: a smoke run proves the
steps, it is not the soak):

1. the corpus: ``tools/make_corpus.py --n N --seed S`` (distinct spliced sentences, EWT-like lengths);
2. ``attnx extract CORPUS -o STORE --dtype q10 --model minilm``, watched from this process without touching
   the run: every new snapshot file in ``STORE/snapshots`` is a commit, whose records come from Icechunk's
   ``lookup_snapshot`` metadata; at each one the child's RSS (psutil) and the repository's metadata bytes
   (every object but chunks; Icechunk objects are immutable, so sizes are summed once per new file) are
   recorded. At ``--kill-at`` (0.6) of N committed records the child gets SIGKILL; the same command is then
   run again and timed to its first new chunk object (writing again) and its first new commit;
3. on the finished store, each in a fresh process with its peak RSS (``wait4``'s ``ru_maxrss``):
   ``open_store`` + ``len``, ``attnx info``, ``attnx show`` of the last record, ``open_dataset``,
   ``attnx verify``, ``attnx analyze --only features,patterns,similarity``;
4. a ``--prefix``-record store (the corpus's first records, same options) through ``verify`` and ``analyze``
   for the GB/s comparison;
5. ``attnx compact`` of the finished store (objects and metadata bytes before -> after), then ``verify`` again;
6. ``attnx extract --stats-only`` over the same N sentences (rate, store size);
7. the issue's targets, evaluated and printed; the result file for ``make_results.py``.

Work files (corpus, stores, PNG, analysis) go to ``--work`` (outside the repository; large at 10^6: about
30 GB for the q10 store). Usage::

    python benchmarks/bench_million.py --n 2000 --work /tmp/million-smoke --commit-seconds 1   # smoke
    python benchmarks/bench_million.py --work /data/million                                     # the soak
    python benchmarks/bench_million.py --work /data/million --continue    # after an interruption: the rest

Each finished step is saved in ``WORK/partial.json``; ``--continue`` keeps those and runs the others (a step
cut off in the middle is run again from its start). ``seconds_all_steps`` then counts only this invocation.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

from attnx.benchkit import load1, machine, write_result

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SOAK_N = 10**6
POLL_S = 0.5
# the targets
TARGET_RATE_DRIFT = 0.10  # last 10% of records within 10% of the first 10%'s rate
TARGET_RSS_BYTES = 2 << 30  # every command
TARGET_OPEN_S = 2.0  # open_store, info, show
TARGET_GBPS_RATIO = 0.90  # verify/analyze GB/s on the full store vs the prefix store
TARGET_RESUME_FRACTION = 0.05  # time to write again after the kill, of the whole run's time


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------------------------
# running a step: wall time and peak RSS of a child process
# ------------------------------------------------------------------------------------------------------------
def attnx_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "attnx.cli.main", *args]


def run_step(name: str, cmd: list[str], env: dict | None = None) -> dict:
    """Run ``cmd`` to the end: wall seconds, peak RSS (bytes, from ``wait4``), exit code, last output line."""
    log(f"{name}: {' '.join(cmd[2:] if cmd[:2] == [sys.executable, '-m'] else cmd)}")
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    out, err = _communicate_rusage(proc)
    seconds = time.perf_counter() - t0
    rc, maxrss_kb = proc.returncode, proc.maxrss_kb  # type: ignore[attr-defined]
    if rc != 0:
        raise RuntimeError(f"{name} failed (exit {rc}): {(err or out).strip().splitlines()[-1:]}")
    lines = [ln for ln in out.strip().splitlines() if ln.strip()]
    return {
        "step": name,
        "seconds": seconds,
        "peak_rss_bytes": maxrss_kb * 1024,
        "stdout_last": lines[-1:] and lines[-1],
        "stdout": out,
    }


def _communicate_rusage(proc: subprocess.Popen) -> tuple[str, str]:
    """``communicate`` that reaps the child itself with ``os.wait4`` to read its peak RSS."""
    chunks: dict[str, list[str]] = {"out": [], "err": []}

    def drain(stream, key: str) -> None:  # noqa: ANN001
        chunks[key].append(stream.read())

    threads = [
        threading.Thread(target=drain, args=(proc.stdout, "out")),
        threading.Thread(target=drain, args=(proc.stderr, "err")),
    ]
    for t in threads:
        t.start()
    _, status, usage = os.wait4(proc.pid, 0)
    for t in threads:
        t.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    proc.maxrss_kb = usage.ru_maxrss  # type: ignore[attr-defined]
    return "".join(chunks["out"]), "".join(chunks["err"])


# ------------------------------------------------------------------------------------------------------------
# watching a run's commits from outside
# ------------------------------------------------------------------------------------------------------------
class StoreWatch:
    """New snapshot and chunk objects of a local store, and the metadata bytes, by listing its folders.

    Icechunk writes every object once under a fresh name, so each poll lists the folders and stats only the
    files not seen before; a new file in ``snapshots/`` is a commit.
    """

    def __init__(self, store: Path) -> None:
        self.store = store
        self.seen: dict[str, set[str]] = {k: set() for k in ("snapshots", "manifests", "transactions", "chunks")}
        self.meta_bytes = 0
        self.chunk_objects = 0
        self._repo = None

    def poll(self) -> list[tuple[float, str]]:
        """(file mtime, id) of the snapshots new since the last poll, oldest first."""
        new_snaps = []
        for kind, seen in self.seen.items():
            try:
                entries = list(os.scandir(self.store / kind))
            except FileNotFoundError:
                continue
            for e in entries:
                if e.name in seen or e.name.endswith(".tmp") or not e.is_file():
                    continue
                seen.add(e.name)
                if kind == "chunks":
                    self.chunk_objects += 1
                    continue
                try:
                    st = e.stat()
                except FileNotFoundError:
                    continue
                self.meta_bytes += st.st_size
                if kind == "snapshots":
                    new_snaps.append((st.st_mtime, e.name))
        return sorted(new_snaps)

    def records(self, snapshot_id: str) -> int | None:
        """Records after a commit, from its snapshot's metadata (None: not readable yet; asked again later)."""
        import icechunk

        try:
            if self._repo is None:
                self._repo = icechunk.Repository.open(icechunk.local_filesystem_storage(str(self.store)))
            return (self._repo.lookup_snapshot(snapshot_id).metadata or {}).get("records")
        except Exception:  # noqa: BLE001 - a snapshot file seen before its write finished
            return None


def rss_tree(proc: psutil.Process) -> int:
    """Resident bytes of a process and its children."""
    try:
        procs = [proc, *proc.children(recursive=True)]
        return sum(p.memory_info().rss for p in procs if p.is_running())
    except psutil.Error:
        return 0


def watched_extract(
    cmd: list[str], store: Path, n: int, env: dict, kill_at_records: int | None, phase: str, watch: StoreWatch
) -> dict:
    """Run an extract, recording each commit: (seconds since start, records, rss, metadata bytes). With
    ``kill_at_records`` the child is SIGKILLed once a commit holds at least that many records."""
    log(f"{phase}: {' '.join(cmd[3:])}")
    t0, wall0 = time.perf_counter(), time.time()
    chunks_before = watch.chunk_objects
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, text=True)
    ps = psutil.Process(proc.pid)
    commits: list[dict] = []
    pending: list[tuple[float, str]] = []
    first_chunk_s = first_commit_s = killed_at = None
    peak_sampled = 0
    rc = maxrss_kb = ended = None
    err_lines: list[str] = []
    threading.Thread(target=lambda: err_lines.extend(proc.stderr), daemon=True).start()
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)  # reaped here: ru_maxrss is the exact peak
        if pid:
            rc, maxrss_kb = os.waitstatus_to_exitcode(status), usage.ru_maxrss
            proc.returncode = rc
        rss = 0 if rc is not None else rss_tree(ps)
        peak_sampled = max(peak_sampled, rss)
        pending += watch.poll()
        now = time.perf_counter() - t0
        if first_chunk_s is None and watch.chunk_objects > chunks_before:
            first_chunk_s = now
        still = []
        for mtime, snap in pending:
            records = watch.records(snap)
            if records is None:
                still.append((mtime, snap))
                continue
            t = mtime - wall0  # the commit's own time (its snapshot file's mtime), not the poll's
            commits.append(
                {
                    "t": t,
                    "records": records,
                    "rss_bytes": rss,
                    "metadata_bytes": watch.meta_bytes,
                    "load_1min": load1(),
                    "snapshot": snap,
                }
            )
            first_commit_s = t if first_commit_s is None else first_commit_s
        pending = still
        if kill_at_records and rc is None and commits and commits[-1]["records"] >= kill_at_records:
            proc.send_signal(signal.SIGKILL)
            _, status, usage = os.wait4(proc.pid, 0)
            rc, maxrss_kb = os.waitstatus_to_exitcode(status), usage.ru_maxrss
            proc.returncode = rc
            killed_at = commits[-1]["records"]
            log(f"{phase}: SIGKILL after {killed_at:,} committed records at {now:.1f} s")
            break
        if rc is not None:
            ended = ended or time.perf_counter()
            if not pending or time.perf_counter() - ended > 30:  # the last snapshot readable, or give up on it
                break
        time.sleep(POLL_S)
    seconds = time.perf_counter() - t0
    if rc not in (0, -signal.SIGKILL):
        raise RuntimeError(f"{phase} failed (exit {rc}): {''.join(err_lines[-3:]).strip()}")
    return {
        "phase": phase,
        "seconds": seconds,
        "commits": commits,
        "peak_rss_bytes": maxrss_kb * 1024,
        "peak_rss_sampled_bytes": peak_sampled,
        "killed_at_records": killed_at,
        "first_chunk_s": first_chunk_s,
        "first_commit_s": first_commit_s,
    }


def span_rate(a: dict, b: dict) -> float | None:
    """Records/s between two commits of one process."""
    return (b["records"] - a["records"]) / (b["t"] - a["t"]) if b["t"] > a["t"] else None


def edge_rates(runs: list[dict], n: int) -> dict:
    """Extraction rate of the first and last 10% of records, each between two commits of one process (so the
    kill's gap and a start-up are never inside a span): first = from the first commit that holds records (the
    commit of 0 records creates the store; the model's start-up comes before it) to the first commit at least
    n/10 records later; last = from the last commit of the final run at or below 0.9 n to its end. A span is
    widened to the next commit where commits are sparser than n/10 (small runs)."""
    first = [c for c in runs[0]["commits"] if c["records"] > 0]
    last = runs[-1]["commits"]
    r_first = r_last = None
    if len(first) >= 2:
        end = next((c for c in first[1:] if c["records"] >= first[0]["records"] + n // 10), first[-1])
        r_first = span_rate(first[0], end)
    if len(last) >= 2:
        before = [c for c in last[:-1] if c["records"] <= n - n // 10]
        r_last = span_rate(before[-1] if before else last[-2], last[-1])
    return {
        "first_10pct_per_s": r_first,
        "last_10pct_per_s": r_last,
        "last_vs_first": (r_last / r_first) if r_first and r_last else None,
    }


# ------------------------------------------------------------------------------------------------------------
# the steps on a finished store
# ------------------------------------------------------------------------------------------------------------
_OPEN = (
    "import json, sys, time; t = time.perf_counter(); import attnx; s = attnx.open_store(sys.argv[1]); "
    "n = len(s); print(json.dumps({'seconds': time.perf_counter() - t, 'records': n}))"
)
_DATASET = (
    "import json, sys, time; t = time.perf_counter(); import attnx; d = attnx.open_dataset(sys.argv[1]); "
    "print(json.dumps({'seconds': time.perf_counter() - t, 'variables': len(d.variables)}))"
)


def store_bytes(store: Path) -> dict:
    """Raw and stored attention bytes of a store (what GB/s are computed on)."""
    import attnx

    opened = attnx.open_store(store)
    info = opened.info()
    return {
        "records": info["records"],
        "commits": sum(h["records"] is not None for h in opened.history()),
        "attention_bytes_raw": info["attention_bytes_raw"],
        "attention_bytes_disk": info["attention_bytes_disk"],
        "store_bytes_disk": info["store_bytes_disk"],
    }


def read_steps(store: Path, work: Path, env: dict, tag: str, full: bool) -> dict:
    """Each read command on ``store`` in a fresh process; ``full`` adds open/info/show/open_dataset."""
    nbytes = store_bytes(store)
    steps = {"start-up floor": run_step(f"{tag} start-up floor", attnx_cmd("--version"), env)}
    if full:
        last = nbytes["records"] - 1
        steps["open_store+len"] = run_step(f"{tag} open_store", [sys.executable, "-c", _OPEN, str(store)], env)
        steps["open_store+len"]["inside_s"] = json.loads(steps["open_store+len"]["stdout_last"])["seconds"]
        steps["info"] = run_step(f"{tag} info", attnx_cmd("info", str(store)), env)
        steps["show last"] = run_step(
            f"{tag} show", attnx_cmd("show", str(store), str(last), "-o", str(work / f"{tag}-last.png")), env
        )
        steps["open_dataset"] = run_step(f"{tag} open_dataset", [sys.executable, "-c", _DATASET, str(store)], env)
        steps["open_dataset"]["inside_s"] = json.loads(steps["open_dataset"]["stdout_last"])["seconds"]
    steps["verify"] = run_step(f"{tag} verify", attnx_cmd("verify", str(store)), env)
    out = work / f"{tag}-analysis"
    shutil.rmtree(out, ignore_errors=True)
    steps["analyze"] = run_step(
        f"{tag} analyze",
        attnx_cmd("analyze", str(store), "-o", str(out), "--only", "features,patterns,similarity", "--no-progress"),
        env,
    )
    for name in ("verify", "analyze"):
        steps[name]["gb_per_s_raw"] = nbytes["attention_bytes_raw"] / steps[name]["seconds"] / 1e9
    for s in steps.values():
        s.pop("stdout", None)
    return {"bytes": nbytes, "steps": steps}


def recheck(work: Path, env: dict, rounds: int, out: Path) -> int:
    """After the soak: the commands a fix changed, again, on the soak's finished (compacted) store and its prefix,
    ``rounds`` times each in fresh processes (median, min, max): ``open_store``, ``info``, ``show`` of the last
    record; and ``analyze`` with and without the similarity sample on the prefix and on a 100-record store, so
    that the analyses' fixed cost (start-up, similarity's sample) is measured apart from their GB/s."""
    from attnx.benchkit import spread

    stores = {"full": work / "million.zarr", "prefix": work / "prefix.zarr"}
    tiny = work / "tiny.zarr"
    if not tiny.exists():
        tiny_in = work / "tiny-100.txt"
        with open(work / "prefix-10000.txt", encoding="utf-8") as src, open(tiny_in, "w", encoding="utf-8") as dst:
            for _, line in zip(range(100), src, strict=False):
                dst.write(line)
        run_step("tiny extract", attnx_cmd("extract", str(tiny_in), "-o", str(tiny), "--dtype", "q10", "-q"), env)
    stores["tiny"] = tiny
    res: dict = {"part": "million_recheck", "machine": machine(), "load_1min": [load1()], "rounds": rounds,
                 "stores": {k: store_bytes(v) for k, v in stores.items()}, "steps": {}}
    for r in range(rounds):
        for tag, store in stores.items():
            last = str(res["stores"][tag]["records"] - 1)
            cmds = {
                "open_store+len": [sys.executable, "-c", _OPEN, str(store)],
                "info": attnx_cmd("info", str(store)),
                "show last": attnx_cmd("show", str(store), last, "-o", str(work / f"recheck-{tag}.png")),
            }
            if tag != "full":
                for only in ("features,patterns", "features,patterns,similarity"):
                    a_out = work / f"recheck-{tag}-analysis"
                    shutil.rmtree(a_out, ignore_errors=True)
                    cmds[f"analyze {only}"] = attnx_cmd("analyze", str(store), "-o", str(a_out), "--only", only,
                                                        "--no-progress")
            for name, cmd in cmds.items():
                step = run_step(f"recheck {tag} {name} (round {r + 1})", cmd, env)
                res["steps"].setdefault(tag, {}).setdefault(name, []).append(
                    {"seconds": step["seconds"], "peak_rss_bytes": step["peak_rss_bytes"]}
                )
    res["load_1min"].append(load1())
    res["summary"] = {
        tag: {name: {"seconds": spread([x["seconds"] for x in xs]),
                     "peak_rss_mb": max(x["peak_rss_bytes"] for x in xs) / 1e6} for name, xs in by.items()}
        for tag, by in res["steps"].items()
    }
    raw = {tag: res["stores"][tag]["attention_bytes_raw"] for tag in stores}
    # the prefix's features+patterns GB/s once the 100-record store's time (start-up) is taken off; similarity is
    # left out: its JS part reads a seeded subset of at most 5,000 records, a cost that stops growing there
    only = "features,patterns"
    res["prefix_gb_per_s_after_fixed"] = {
        only: (raw["prefix"] - raw["tiny"])
        / max(1e-9, res["summary"]["prefix"][f"analyze {only}"]["seconds"]["median"]
              - res["summary"]["tiny"][f"analyze {only}"]["seconds"]["median"]) / 1e9
    }
    write_result(out, res)
    for tag, by in res["summary"].items():
        for name, v in by.items():
            sec = v["seconds"]
            log(f"{tag:6s} {name:34s} {sec['median']:7.2f} s [{sec['min']:.2f}..{sec['max']:.2f}]  "
                f"peak {v['peak_rss_mb']:,.0f} MB")
    log(f"prefix analyze GB/s after the fixed cost: {res['prefix_gb_per_s_after_fixed']}")
    log(f"wrote {out}")
    return 0


# ------------------------------------------------------------------------------------------------------------
# the targets
# ------------------------------------------------------------------------------------------------------------
def targets(res: dict) -> list[dict]:
    out = []

    def add(name: str, value: float | None, limit: float, ok: bool | None, unit: str = "") -> None:
        out.append({"target": name, "value": value, "limit": limit, "met": ok, "unit": unit})

    edge = res["extract"]["edge_rates"]
    ratio = edge["last_vs_first"]
    add(
        "rate of the last 10% vs the first 10%",
        ratio,
        1 - TARGET_RATE_DRIFT,
        None if ratio is None else ratio >= 1 - TARGET_RATE_DRIFT,
        "x",
    )
    peaks = {
        **{f"extract ({r['phase']})": r["peak_rss_bytes"] for r in res["extract"]["runs"]},
        **{k: v["peak_rss_bytes"] for k, v in res["full"]["steps"].items()},
        **({"extract --stats-only": res["stats_only"]["peak_rss_bytes"]} if res.get("stats_only") else {}),
        **({"compact": res["compact"]["peak_rss_bytes"]} if res.get("compact") else {}),
    }
    worst = max(peaks, key=peaks.get)
    add(
        f"peak RSS of every command (largest: {worst})",
        peaks[worst] / 2**30,
        TARGET_RSS_BYTES / 2**30,
        peaks[worst] <= TARGET_RSS_BYTES,
        "GiB",
    )
    growth = {
        k: v["peak_rss_bytes"] / res["prefix"]["steps"][k]["peak_rss_bytes"]
        for k, v in res["full"]["steps"].items()
        if k in res["prefix"]["steps"]
    }
    most = max(growth, key=growth.get)
    add(f"peak RSS vs the prefix store's, same command (largest: {most})", growth[most], 1.2, growth[most] <= 1.2, "x")
    floor = res["full"]["steps"]["start-up floor"]["seconds"]
    for name in ("open_store+len", "info", "show last"):
        s = res["full"]["steps"][name]["seconds"]
        add(f"{name}: wall s (process start-up {floor:.1f} s included)", s, TARGET_OPEN_S, s <= TARGET_OPEN_S, "s")
        p = res["prefix"]["steps"][name]["seconds"]
        add(
            f"{name}: wall s vs the prefix store's ({res['full']['bytes']['commits']} vs "
            f"{res['prefix']['bytes']['commits']} commits)",
            s / p,
            1.2,
            s / p <= 1.2,
            "x",
        )
    for name in ("verify", "analyze"):
        full = res["full"]["steps"][name]["gb_per_s_raw"]
        prefix = res["prefix"]["steps"][name]["gb_per_s_raw"]
        add(
            f"{name} GB/s vs the {res['prefix']['bytes']['records']:,}-record prefix store",
            full / prefix,
            TARGET_GBPS_RATIO,
            full / prefix >= TARGET_GBPS_RATIO,
            "x",
        )
    frac = res["extract"]["resume"]["to_first_chunk_s"]
    whole = res["extract"]["seconds_total"]
    if frac is not None:
        add(
            "resume: time to write again, of the whole run",
            frac / whole,
            TARGET_RESUME_FRACTION,
            frac / whole <= TARGET_RESUME_FRACTION,
            "fraction",
        )
    return out


def print_targets(rows: list[dict]) -> None:
    print(f"{'target':<60} {'value':>12} {'limit':>8}  met")
    for r in rows:
        v = "-" if r["value"] is None else f"{r['value']:.3g}"
        print(f"{r['target']:<60} {v:>12} {r['limit']:>8.3g}  {r['met']}")


# ------------------------------------------------------------------------------------------------------------
def extract_with_kill(extract: list[str], store: Path, args: argparse.Namespace, env: dict) -> dict:
    """Step 2: extract from scratch, SIGKILL at ``kill_at`` of N committed records, resume with the same command."""
    shutil.rmtree(store, ignore_errors=True)
    watch = StoreWatch(store)
    first = watched_extract(extract, store, args.n, env, int(args.kill_at * args.n), "before kill", watch)
    second = watched_extract(extract, store, args.n, env, None, "resumed", watch)
    runs = [first, second]
    return {
        "command": " ".join(extract[3:]),
        "runs": runs,
        "seconds_total": first["seconds"] + second["seconds"],
        "commits": len(first["commits"]) + len(second["commits"]),
        "records_per_s_overall": args.n / (first["seconds"] + second["seconds"]),
        "edge_rates": edge_rates(runs, args.n),
        "resume": {
            "killed_at_records": first["killed_at_records"],
            "to_first_chunk_s": second["first_chunk_s"],
            "to_first_commit_s": second["first_commit_s"],
        },
    }


STEPS = ("extract", "full", "prefix", "compact", "stats_only")


def write_partial(
    args: argparse.Namespace,
    argv: list[str] | None,
    done: dict,
    missing: list[str],
    manifest: dict,
    corpus: Path,
    smoke: bool,
    load_start: float,
) -> int:
    """The result file from the finished steps only; the targets that need a missing step are left out."""
    if "extract" not in done:
        raise SystemExit("--write-partial: the extract step has not finished; there is nothing to report")
    res = assemble(args, argv, done, manifest, corpus, smoke, load_start, seconds=None)
    res["missing_steps"] = missing
    res["label"] += f" (PARTIAL: not run yet: {', '.join(missing) or 'none'})"
    res["targets"] = targets(res) if "full" in done and "prefix" in done else []
    print_targets(res["targets"])
    out = Path(args.out) if args.out else RESULTS / ("million_smoke.json" if smoke else "million.json")
    write_result(out, res)
    log(f"wrote {out} (partial: {', '.join(missing)} not run)")
    return 0


def assemble(
    args: argparse.Namespace,
    argv: list[str] | None,
    done: dict,
    manifest: dict,
    corpus: Path,
    smoke: bool,
    load_start: float,
    seconds: float | None,
) -> dict:
    """The result record of a soak (or a smoke run) from its steps."""
    return {
        "part": "million",
        "smoke": smoke,
        "label": (
            "SMOKE RUN at small n: proves every step of the soak works end to end; not the soak"
            if smoke
            else "the soak"
        ),
        "n": args.n,
        "command": "python benchmarks/bench_million.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": machine(),
        "load_1min": [load_start, load1()],
        "corpus": {
            "path_name": corpus.name,
            "seed": args.seed,
            "sha256": manifest["output_sha256"],
            "words": manifest["words"],
        },
        "options": {
            "model": args.model,
            "dtype": args.dtype,
            "kill_at": args.kill_at,
            "commit_seconds": args.commit_seconds or "default (10 s)",
        },
        **{k: done.get(k) for k in STEPS},
        "seconds_all_steps": seconds,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=SOAK_N, help="sentences (default 10^6: the soak)")
    ap.add_argument("--seed", type=int, default=1, help="corpus seed")
    ap.add_argument("--work", required=True, help="folder for the corpus and stores (outside the repository)")
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--dtype", default="q10")
    ap.add_argument("--kill-at", type=float, default=0.6, help="SIGKILL once this fraction of N is committed")
    ap.add_argument("--prefix", type=int, default=10_000, help="records of the prefix store (at most N/4)")
    ap.add_argument(
        "--commit-seconds",
        type=float,
        default=None,
        help="ATTNX_COMMIT_SECONDS for the extracts (default: the library's 10 s); a smoke run uses 1 "
        "so that a short run commits often",
    )
    ap.add_argument(
        "--out",
        default=None,
        help="result file (default results/million.json, or million_smoke.json for --n below 10^6)",
    )
    ap.add_argument(
        "--write-partial",
        action="store_true",
        help="run nothing: write the result file from the steps finished so far in WORK/partial.json, naming the "
        "steps that have not run (for a soak cut off by the end of a working session)",
    )
    ap.add_argument(
        "--continue",
        dest="cont",
        action="store_true",
        help="keep the steps already finished in WORK/partial.json (same n, seed, model, dtype) and run the rest: "
        "the soak takes hours, and a step that ended is not redone after an interruption",
    )
    ap.add_argument(
        "--recheck",
        type=int,
        default=0,
        metavar="ROUNDS",
        help="run nothing of the soak: time open_store, info and show on its finished store and prefix, and analyze "
        "on the prefix and a 100-record store, ROUNDS times each (results/million_recheck.json)",
    )
    args = ap.parse_args(argv)
    import icechunk

    icechunk.set_logs_filter("icechunk=error")  # the watcher only reads; the local-commit warning is noise
    smoke = args.n < SOAK_N
    work = Path(args.work).resolve()
    if work.is_relative_to(ROOT):
        ap.error(f"--work {work}: inside the repository; the corpus and stores stay out of it")
    work.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT / "src"), os.environ.get("PYTHONPATH", "")) if p),
    }
    if args.commit_seconds is not None:
        env["ATTNX_COMMIT_SECONDS"] = str(args.commit_seconds)
    if args.recheck:
        return recheck(work, env, args.recheck, Path(args.out) if args.out else RESULTS / "million_recheck.json")
    t_all = time.perf_counter()
    load_start = load1()
    partial_path = work / "partial.json"
    key = {"n": args.n, "seed": args.seed, "model": args.model, "dtype": args.dtype, "kill_at": args.kill_at}
    done: dict = {}
    if args.cont and partial_path.is_file():
        saved = json.loads(partial_path.read_text())
        if saved.get("key") == key:
            done = saved["steps"]
            log(f"--continue: keeping {', '.join(done)} from {partial_path}")
        else:
            log(f"--continue: {partial_path} is for {saved.get('key')}, not {key}: starting over")

    def finished(name: str, value: dict) -> dict:
        done[name] = value
        partial_path.write_text(json.dumps({"key": key, "steps": done}))
        return value

    # 1. the corpus
    corpus = work / f"corpus-{args.n}-s{args.seed}.txt"
    if args.write_partial:
        if not partial_path.is_file() or json.loads(partial_path.read_text()).get("key") != key:
            ap.error(f"--write-partial: no finished steps for {key} in {partial_path}")
        done = json.loads(partial_path.read_text())["steps"]
    if not corpus.is_file() and not args.write_partial:
        run_step(
            "corpus",
            [
                sys.executable,
                str(ROOT / "tools" / "make_corpus.py"),
                "--n",
                str(args.n),
                "--seed",
                str(args.seed),
                "--output",
                str(corpus),
            ],
            env,
        )
    manifest = json.loads(Path(f"{corpus}.json").read_text())

    # 2. extract, SIGKILL at kill-at, resume with the same command
    store = work / "million.zarr"
    if args.write_partial:
        missing = [k for k in STEPS if k not in done]
        return write_partial(args, argv, done, missing, manifest, corpus, smoke, load_start)
    extract = attnx_cmd("extract", str(corpus), "-o", str(store), "--dtype", args.dtype, "--model", args.model, "-q")
    if "extract" in done:
        ext = done["extract"]
    else:
        ext = finished("extract", extract_with_kill(extract, store, args, env))
    _, second = ext["runs"]
    log(
        f"extract: {ext['commits']} commits, {ext['records_per_s_overall']:.1f} sent/s overall, resume wrote again "
        f"after {second['first_chunk_s']} s"
    )

    # 3. the finished store; 4. the prefix store
    full = done.get("full") or finished("full", read_steps(store, work, env, "full", full=True))
    if "prefix" in done:
        prefix = done["prefix"]
    else:
        prefix_n = min(args.prefix, max(1, args.n // 4))
        prefix_corpus = work / f"prefix-{prefix_n}.txt"
        with open(corpus, encoding="utf-8") as src, open(prefix_corpus, "w", encoding="utf-8") as dst:
            for _, line in zip(range(prefix_n), src, strict=False):
                dst.write(line)
        prefix_store = work / "prefix.zarr"
        shutil.rmtree(prefix_store, ignore_errors=True)
        prefix_extract = run_step(
            "prefix extract",
            attnx_cmd(
                "extract",
                str(prefix_corpus),
                "-o",
                str(prefix_store),
                "--dtype",
                args.dtype,
                "--model",
                args.model,
                "-q",
            ),
            env,
        )
        prefix = read_steps(prefix_store, work, env, "prefix", full=True)
        prefix["extract_seconds"] = prefix_extract["seconds"]
        finished("prefix", prefix)

    # 5. compact, then verify again (before the stats-only run: the soak's own store is done with here)
    if "compact" in done:
        compact = done["compact"]
    else:
        compact = run_step("compact", attnx_cmd("compact", str(store), "--json"), env)
        report = json.loads(compact.pop("stdout"))
        compact.pop("stdout_last")
        compact.update({k: report[k] for k in ("snapshots_expired", "deleted", "before", "after")})
        verify_after = run_step("verify after compact", attnx_cmd("verify", str(store)), env)
        verify_after.pop("stdout", None)
        compact["verify_after_seconds"] = verify_after["seconds"]
        finished("compact", compact)

    # 6. --stats-only over the same N
    if "stats_only" in done:
        stats = done["stats_only"]
    else:
        stats_store = work / "stats.zarr"
        shutil.rmtree(stats_store, ignore_errors=True)
        stats = run_step(
            "stats-only",
            attnx_cmd(
                "extract", str(corpus), "-o", str(stats_store), "--stats-only", "--model", args.model, "-q", "--json"
            ),
            env,
        )
        summary = json.loads(stats.pop("stdout"))
        stats.pop("stdout_last")
        stats.update(
            {
                "records_per_s": summary["sentences_per_s"],
                "store_bytes": summary["store_bytes"],
                "run_seconds": summary["seconds"],
            }
        )
        finished("stats_only", stats)

    done.update(full=full, prefix=prefix, compact=compact, stats_only=stats)
    res = assemble(args, argv, done, manifest, corpus, smoke, load_start, seconds=time.perf_counter() - t_all)
    res["targets"] = targets(res)
    res["load_1min"].append(load1())
    print_targets(res["targets"])
    out = Path(args.out) if args.out else RESULTS / ("million_smoke.json" if smoke else "million.json")
    write_result(out, res)
    log(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
