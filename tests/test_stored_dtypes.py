"""attnx.stored_dtypes: every stored dtype's round trip stays within its stated bound; torch and numpy agree bit for
bit."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import zarr
from helpers.paths import SAMPLE
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from attnx import stored_dtypes as Q

ALL = list(Q.DTYPES)
QUANT = [n for n in ALL if Q.DTYPES[n].quantised]


def softmax_rows(rng: np.random.Generator, n: int, l: int, spread: float) -> np.ndarray:
    """(n, l, l) float32 rows summing to 1; large ``spread`` gives many tiny probabilities (down to ~1e-30)."""
    x = rng.normal(0.0, spread, size=(n, l, l))
    x -= x.max(-1, keepdims=True)
    p = np.exp(x)
    return (p / p.sum(-1, keepdims=True)).astype(np.float32)


def roundtrip_error(p: np.ndarray, name: str) -> float:
    return float(np.abs(Q.decode(Q.encode(p, name), name) - p).max())


def test_table():
    assert Q.DTYPES["q10"].levels == 1023 and Q.DTYPES["q10"].storage == np.uint16
    assert Q.DTYPES["q8"].storage == np.uint8 and Q.DTYPES["uint8"].levels == 255
    assert Q.DTYPES["q16"].levels == 65535 and Q.DTYPES["q16"].bits == 16
    assert Q.DTYPES["q10"].max_abs_error < 5e-4  # the target for the chosen dtype
    assert Q.DTYPES["float16"].max_abs_error == 2.0**-12
    for name in QUANT:
        assert Q.DTYPES[name].codec in Q.CODECS
    with pytest.raises(ValueError, match="unknown stored dtype 'q7'"):
        Q.stored_dtype("q7")


@pytest.mark.parametrize("name", ALL)
def test_edges_exact(name):
    p = np.array([0.0, 1.0], np.float32)
    assert np.array_equal(Q.decode(Q.encode(p, name), name), p)
    assert Q.encode(p, name).dtype == Q.DTYPES[name].storage


@pytest.mark.parametrize("name", QUANT)
def test_quantised_values(name):
    d = Q.DTYPES[name]
    # out-of-range inputs clamp; exact grid points stay; half steps round to even like torch.round
    p = np.array([-0.1, 1.5, 0.5 / d.levels, 1.5 / d.levels, 3.0 / d.levels], np.float32)
    assert Q.encode(p, name).tolist() == [0, d.levels, 0, 2, 3]


@pytest.mark.parametrize("name", ALL)
def test_bound_random_and_softmax(name):
    rng = np.random.default_rng(0)
    bound = Q.DTYPES[name].max_abs_error
    uniform = rng.random(1 << 20, dtype=np.float32)
    assert roundtrip_error(uniform, name) <= bound
    for spread in (0.5, 3.0, 30.0):
        assert roundtrip_error(softmax_rows(rng, 64, 40, spread), name) <= bound


@pytest.mark.parametrize("name", ["float16", "q10", "q12", "q16"])
def test_bound_is_tight(name):
    """The stated bound is reached to within 1% on a dense grid: a looser (or wrong) statement fails here."""
    p = np.linspace(0.0, 1.0, 1 << 22, dtype=np.float64).astype(np.float32)
    err = roundtrip_error(p, name)
    d = Q.DTYPES[name]
    rounding = 0.5 / d.levels if d.quantised else d.max_abs_error  # the bound less float32 arithmetic slack
    assert 0.99 * rounding <= err <= d.max_abs_error


def test_float16_keeps_tiny_values_quantised_do_not():
    p = np.array([1e-6, 3e-5, 1e-4], np.float32)
    err = np.abs(Q.decode(Q.encode(p, "float16"), "float16") - p)
    assert np.all(err <= np.maximum(p * 2.0**-11, 2.0**-25))  # half an ulp; subnormals below 6.1e-5
    assert Q.encode(p, "q10").tolist() == [0, 0, 0]  # below half a step (4.9e-4): stored as 0


@settings(max_examples=200, deadline=None)
@given(
    name=st.sampled_from(ALL),
    p=arrays(np.float32, st.integers(1, 300), elements=st.floats(0.0, 1.0, width=32)),
)
def test_property_roundtrip_bound_and_monotone(name, p):
    stored = Q.encode(p, name)
    assert stored.dtype == Q.DTYPES[name].storage and stored.shape == p.shape
    back = Q.decode(stored, name)
    assert back.dtype == np.float32
    assert np.all(np.abs(back - p) <= Q.DTYPES[name].max_abs_error)
    order = np.argsort(p, kind="stable")
    assert np.all(np.diff(back[order]) >= 0)  # quantisation never reorders probabilities


@settings(max_examples=100, deadline=None)
@given(
    name=st.sampled_from(ALL),
    p=arrays(np.float32, st.integers(1, 300), elements=st.floats(0.0, 1.0, width=32)),
)
def test_property_torch_matches_numpy(name, p):
    t = Q.encode_torch(torch.from_numpy(p), name)
    assert t.dtype == Q.torch_storage_dtype(name)
    assert np.array_equal(Q.torch_to_numpy(t, name), Q.encode(p, name))


def test_torch_q16_bit_pattern():
    p = torch.tensor([0.0, 0.4999, 0.5, 0.75, 1.0])
    t = Q.encode_torch(p, "q16")
    assert t.dtype == torch.int16
    assert Q.torch_to_numpy(t, "q16").tolist() == Q.encode(p.numpy(), "q16").tolist() == [0, 32761, 32768, 49151, 65535]
    assert Q.torch_to_numpy(t, "q16").dtype == np.uint16


@pytest.mark.parametrize("name", ["float32", "float16", "uint8", "q10", "q12", "q16"])
def test_zarr_pipeline_roundtrip(name):
    d = Q.DTYPES[name]
    p = softmax_rows(np.random.default_rng(1), 8, 30, 3.0).ravel()
    arr = zarr.create_array(
        zarr.storage.MemoryStore(),
        shape=p.shape,
        chunks=(1000,),
        dtype=d.storage,
        **Q.zarr_codecs(d.codec, name, d.level),
    )
    arr[:] = Q.encode(p, name)
    assert np.array_equal(arr[:], Q.encode(p, name))
    with pytest.raises(ValueError, match="unknown codec 'lzma'"):
        Q.zarr_codecs("lzma", name, 1)


def test_against_transformers_eager(minilm, eager_minilm):
    """Real MiniLM maps (transformers' eager attention, fp32) through every dtype: error within the bound."""
    lines = (SAMPLE / "sample.txt").read_text(encoding="utf-8").splitlines()[:12]
    worst = dict.fromkeys(ALL, 0.0)
    for line in lines:
        enc = minilm.tokenizer(line, return_tensors="pt")
        with torch.no_grad():
            ref = torch.stack(eager_minilm(**enc, output_attentions=True).attentions)[:, 0]  # (layers, heads, l, l)
        for name in ALL:
            got = Q.decode(Q.torch_to_numpy(Q.encode_torch(ref, name), name), name)
            worst[name] = max(worst[name], float(np.abs(got - ref.numpy()).max()))
    for name in ALL:
        assert worst[name] <= Q.DTYPES[name].max_abs_error, (name, worst[name])
    assert worst["q10"] > 0.5 * Q.DTYPES["q10"].max_abs_error  # real maps do exercise the bound


@pytest.mark.parametrize("name", QUANT)
def test_decode_every_level(name):
    """Every stored integer decodes to float32(q) * float32(1 / levels), within the bound of q / levels."""
    d = Q.DTYPES[name]
    q = np.arange(d.levels + 1).astype(d.storage)
    got = Q.decode(q, name)
    assert np.array_equal(got, q.astype(np.float32) * np.float32(d.scale))
    assert np.abs(got - np.arange(d.levels + 1) / d.levels).max() <= 2.0**-23
    assert np.array_equal(Q.encode(got, name), q)  # decode then encode is the identity


@pytest.mark.parametrize("name", ALL)
def test_decode_matches_reference(name):
    """The numba decode against the numpy reference: every float16 bit pattern, every qN level, 2-D input."""
    d = Q.DTYPES[name]
    if d.storage == np.float16:
        stored = np.arange(1 << 16, dtype=np.uint16).view(np.float16)
    elif d.quantised:
        stored = np.arange(d.levels + 1).astype(d.storage)
    else:
        stored = np.random.default_rng(0).random(1000, dtype=np.float32)
    assert np.array_equal(Q.decode(stored, name), Q.decode_ref(stored, name), equal_nan=True)
    two_d = stored[: (len(stored) // 4) * 4].reshape(4, -1)[:, ::2]  # non-contiguous
    assert np.array_equal(Q.decode(two_d, name), Q.decode_ref(two_d, name), equal_nan=True)
    assert Q.decode(two_d, name).shape == two_d.shape and Q.decode(two_d, name).dtype == np.float32
