"""The kernels' results must not depend on numba's cache state.

Freshly compiled and cache-loaded numba code can order a fastmath sum differently; float32 head-similarity
sums once differed in their last bits between the two (a Dask worker that loaded the cache and a client that
had just compiled disagreed by 4e-9, failing ``test_analyze_with_workers_equals_analyze_without`` on every
clean clone). This runs the kernels in two fresh processes sharing an empty ``NUMBA_CACHE_DIR``: the first
compiles and writes the cache, the second loads it. Integer outputs must be equal and float outputs equal to
1e-12 relative: float64 sums may still be reordered (fastmath) by about 1e-16; float32 rounding (1e-7) fails.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow  # two fresh processes compiling and loading every kernel

SCRIPT = r"""
import sys
import numpy as np
sys.path.insert(0, sys.argv[1])
from helpers.synth import block_from_records, synth_records
from attnx.kernels.common import kernel_input
from attnx.kernels.compare import compare_maps
from attnx.kernels.features import map_features
from attnx.kernels.pattern_model import classify_sums
from attnx.kernels.rollout import rollout_flat
from attnx.kernels.similarity import head_similarity

rng = np.random.default_rng(7)
b = block_from_records(synth_records(rng, 60, 3, 4, dtype="float16", lmin=5, lmax=70), "float16")
inp = kernel_input(b.attn, b.scale)
out = [head_similarity(inp, b.attn_offsets, b.lengths, 12, m)[0] for m in ("cosine", "js")]
other = kernel_input((b.attn.astype(np.float32) * rng.uniform(0.5, 1.5, b.attn.size)).astype(np.float32))
out += compare_maps(inp, b.attn_offsets[:-1], other, b.attn_offsets[:-1], b.lengths, 12)
sums = map_features(inp, b.attn_offsets, b.lengths, b.len_a, b.tok_offsets, b.special, b.punct, 3, 4)
labels = classify_sums(sums, b.lengths, b.len_a, np.full(len(b.lengths), 2))
out += [sums, labels.codes, labels.prob, labels.margin, rollout_flat(b.attn, b.attn_offsets, b.lengths, 3, 4)[0]]
np.savez(sys.argv[2], *out)
"""


def test_fresh_and_cached_kernels_agree(tmp_path: Path) -> None:
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba")}
    tests = str(Path(__file__).parent)

    def outputs(name: str) -> list[np.ndarray]:
        res = subprocess.run([sys.executable, "-c", SCRIPT, tests, str(tmp_path / name)], env=env,
                             capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, res.stderr[-3000:]
        with np.load(tmp_path / f"{name}.npz") as f:
            return [f[k] for k in sorted(f.files, key=lambda k: int(k.split("_")[1]))]

    compiled = outputs("compiled")
    assert any((tmp_path / "numba").rglob("*.nbc")), "the first run wrote no numba cache"
    cached = outputs("cached")
    assert len(compiled) == len(cached) == 9
    for k, (a, b) in enumerate(zip(compiled, cached, strict=True)):
        if np.issubdtype(a.dtype, np.floating):
            np.testing.assert_allclose(b, a, rtol=1e-12, atol=0, err_msg=f"output {k}")
        else:
            np.testing.assert_array_equal(b, a, err_msg=f"output {k}")
