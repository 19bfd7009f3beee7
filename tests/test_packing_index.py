"""The torch backend's gather/scatter index against an obviously-correct loop over records, layers, heads."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from attnx.engine.backends.torch_backend import packing_index


def naive_pack(probs: np.ndarray, lengths: list[int], heads: list[int]) -> np.ndarray:
    """probs (layers, B, H, T, T) -> every record's (layers_kept, heads_kept, l, l) real block, back to back."""
    out = []
    for b, l in enumerate(lengths):
        out.append(probs[:, b][:, heads][:, :, :l, :l].ravel())
    return np.concatenate(out)


@pytest.mark.parametrize("seed", range(4))
def test_packing_index_equals_naive_gather(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_layers, n_heads, pad = 3, 5, 9
    lengths = rng.integers(1, pad + 1, int(rng.integers(1, 6))).tolist()
    heads = sorted(rng.choice(n_heads, int(rng.integers(1, n_heads + 1)), replace=False).tolist())
    probs = rng.random((n_layers, len(lengths), n_heads, pad, pad)).astype(np.float32)
    total_layer = len(heads) * sum(l * l for l in lengths)
    index = packing_index(torch.tensor(lengths), total_layer, pad, torch.tensor(heads), n_heads, n_layers)
    out = torch.zeros(index.total)
    for k in range(n_layers):  # as the collector does, one layer at a time
        values = torch.from_numpy(probs[k]).reshape(-1).index_select(0, index.src)
        out.index_copy_(0, index.dst + k * index.layer_stride, values)
    np.testing.assert_array_equal(out.numpy(), naive_pack(probs, lengths, heads))
