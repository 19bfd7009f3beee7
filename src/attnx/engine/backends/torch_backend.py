"""The torch backend: a real forward pass, each layer's probabilities cropped and packed as they are made.

Per layer, the capture function (``attnx.engine.capture``) hands over float32 probabilities
``(B, H, T, T)``; one gather with a per-batch index keeps only the selected heads' real ``l x l`` part of
every record and writes it, converted to the store dtype, straight into the batch's packed buffer
(record b: ``(layers, heads, l_b, l_b)``). The same code runs on CPU and CUDA; CUDA adds only a pinned
host tensor per batch, a non-blocking copy on a copy stream and an event per batch (``_CudaTransfer``, whose
CUDA calls go through ``CudaCalls`` so that the tests run the same logic on a CPU twin).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from attnx.engine.backends.base import Done, PackedBatch, TokenBatch
from attnx.engine.capture import capturing
from attnx.engine.model import LoadedModel
from attnx.stored_dtypes import encode_torch, torch_storage_dtype


@dataclass(frozen=True)
class PackingIndex:
    """Where each kept element of one layer comes from and goes to; ``E`` = sum_b heads*l_b^2."""

    src: torch.Tensor  # (E,) int64 flat index into the layer's (B, H, T, T) probabilities
    dst: torch.Tensor  # (E,) int64 flat index into the packed buffer, for the first kept layer
    layer_stride: torch.Tensor  # (E,) int64 add ``k * layer_stride`` for the k-th kept layer
    total: int  # elements of the packed buffer: layers_kept * E


def packing_index(
    lengths: torch.Tensor, total_layer: int, pad: int, heads: torch.Tensor, n_heads: int, n_layers_kept: int
) -> PackingIndex:
    """Build the gather/scatter index of a batch with torch ops on ``lengths``' device.

    ``lengths`` (B,) int64 real lengths; ``total_layer`` = sum_b heads_kept * l_b^2, passed in from the
    host so that nothing here waits for the device; ``pad`` = T; ``heads`` (Hs,) int64 kept head indices.
    """
    dev = lengths.device
    ll = lengths * lengths  # (B,)
    per_layer = heads.numel() * ll  # (B,) elements of one layer of one record
    rec = torch.repeat_interleave(torch.arange(len(lengths), device=dev), per_layer, output_size=total_layer)
    layer_start = torch.cumsum(per_layer, 0) - per_layer  # (B,)
    local = torch.arange(total_layer, device=dev) - layer_start[rec]  # position inside record's layer block
    l_e = lengths[rec]
    ll_e = ll[rec]
    h = local // ll_e
    r = local - h * ll_e
    i = r // l_e
    j = r - i * l_e
    src = ((rec * n_heads + heads[h]) * pad + i) * pad + j
    rec_start = n_layers_kept * layer_start  # (B,) record offsets in the packed buffer
    dst = rec_start[rec] + local
    return PackingIndex(src=src, dst=dst, layer_stride=per_layer[rec], total=n_layers_kept * total_layer)


def _as_storage(a: np.ndarray) -> np.ndarray:
    """Packed maps as the store's numpy dtype: q9..q16 travel as int16 bit patterns (see attnx.stored_dtypes)."""
    return a.view(np.uint16) if a.dtype == np.int16 else a


class CaptureComplete(Exception):
    """Raised after the last kept layer's maps are captured: the rest of the forward pass (that layer's
    value product and feed-forward block, the pooler) cannot change them, so it is skipped."""


class _Collector:
    """Receives each layer's probabilities and scatters the kept part into ``out``."""

    def __init__(self, layer_pos: dict[int, int], index: PackingIndex, out: torch.Tensor, store_dtype: str) -> None:
        self.layer_pos, self.index, self.out, self.store_dtype = layer_pos, index, out, store_dtype
        self.last = max(layer_pos)

    def __call__(self, layer_idx: int, probs: torch.Tensor) -> None:
        k = self.layer_pos.get(layer_idx)
        if k is None:
            return
        values = probs.reshape(-1).index_select(0, self.index.src)
        dst = self.index.dst + k * self.index.layer_stride if k else self.index.dst
        self.out.index_copy_(0, dst, encode_torch(values, self.store_dtype))
        if layer_idx == self.last:
            raise CaptureComplete


class _FeatureCollector:
    """--stats-only: per kept layer, the map features of the kept heads into ``out`` (B, layers, heads, F)."""

    def __init__(self, layer_pos: dict[int, int], heads: torch.Tensor, batch: dict, out: torch.Tensor) -> None:
        self.layer_pos, self.heads, self.batch, self.out = layer_pos, heads, batch, out
        self.last = max(layer_pos)

    def __call__(self, layer_idx: int, probs: torch.Tensor) -> None:
        from attnx.engine.stats import batch_features

        k = self.layer_pos.get(layer_idx)
        if k is None:
            return
        self.out[:, k] = batch_features(probs.index_select(1, self.heads), **self.batch)
        if layer_idx == self.last:
            raise CaptureComplete


class CudaCalls:
    """The CUDA calls the host transfer makes, in one place, so that a CPU twin (tests/helpers/cuda_twin.py) can stand
    in for them and record their order and devices. Every call names its device: in a process that drives
    several GPUs the current device is not the output's."""

    def stream(self, device: torch.device) -> torch.cuda.Stream:
        return torch.cuda.Stream(device=device)

    def current_stream(self, device: torch.device) -> torch.cuda.Stream:
        return torch.cuda.current_stream(device)

    def event(self) -> torch.cuda.Event:
        return torch.cuda.Event()  # placed on the device of the stream it is first recorded on

    def use(self, stream: torch.cuda.Stream) -> torch.cuda.StreamContext:
        return torch.cuda.stream(stream)  # makes the stream's device current too, and restores both

    def pinned(self, n: int, dtype: torch.dtype) -> torch.Tensor:
        # PyTorch's caching host allocator: a block is handed out again only once every tensor and numpy view
        # of it is gone and the copies recorded on it have finished, so a consumer may keep the maps as long
        # as it likes (the store writer holds views until whole chunks have built up)
        return torch.empty(n, dtype=dtype, pin_memory=True)

    def copy_async(self, dst: torch.Tensor, src: torch.Tensor) -> None:
        dst.copy_(src, non_blocking=True)

    def keep_alive(self, tensor: torch.Tensor, stream: torch.cuda.Stream) -> None:
        tensor.record_stream(stream)  # the device buffer is not reused before the copy stream has read it

    def synchronize(self, device: torch.device) -> None:
        torch.cuda.synchronize(device)


class _CudaPending:
    def __init__(self, host: torch.Tensor, lengths: np.ndarray, event: torch.cuda.Event, keep: object) -> None:
        self.host, self.lengths, self.event, self._keep = host, lengths, event, keep

    def result(self) -> PackedBatch:
        self.event.synchronize()  # the copy into ``host`` has landed
        self._keep = None
        return PackedBatch(attn=_as_storage(self.host.numpy()), lengths=self.lengths)


class _CudaTransfer:
    """Device -> pinned host copies on a copy stream of the output's own device, an event per batch.

    Each batch gets its own pinned host tensor (:meth:`CudaCalls.pinned`); the maps handed on are views of
    it, and nothing reuses its memory while any of them is alive. Order per batch: record ``computed`` on
    the device's current stream -> the copy stream waits for it -> async copy -> record ``copied`` on the
    copy stream; ``result()`` synchronises on ``copied`` before the host memory is read.
    """

    def __init__(self, device: torch.device, calls: CudaCalls | None = None) -> None:
        self.device = device
        self.calls = calls or CudaCalls()
        self.stream = self.calls.stream(device)

    def start(self, out: torch.Tensor, lengths: np.ndarray) -> _CudaPending:
        c = self.calls
        computed = c.event()
        computed.record(c.current_stream(self.device))
        host = c.pinned(out.numel(), out.dtype)
        with c.use(self.stream):
            self.stream.wait_event(computed)
            c.copy_async(host, out)
            copied = c.event()
            copied.record(self.stream)
        c.keep_alive(out, self.stream)
        return _CudaPending(host, lengths, copied, out)

    def close(self) -> None:
        self.calls.synchronize(self.device)


def host_transfer(device: torch.device) -> _CudaTransfer | None:
    """The host transfer a backend on ``device`` uses: None on CPU (results are host memory already)."""
    return _CudaTransfer(device) if device.type == "cuda" else None


class TorchBackend:
    """Runs a loaded model on :class:`TokenBatch`es and returns packed maps of the kept layers and heads.

    ``layers``/``heads``: model layer and head indices to keep (sorted). On CPU ``submit`` returns a
    finished result; on CUDA it returns as soon as the batch is queued on the device.
    """

    name = "torch"

    def __init__(
        self,
        loaded: LoadedModel,
        layers: list[int],
        heads: list[int],
        store_dtype: str,
        stats_only: bool = False,
    ) -> None:
        self.loaded = loaded
        # the torch module is built on first use (LoadedModel.model): build it here, outside submit's inference
        # mode and before any timer or CUDA memory budget the caller starts after making its backend
        loaded.model  # noqa: B018
        self.device = loaded.device
        self.layer_pos = {layer: k for k, layer in enumerate(layers)}
        self.n_layers_kept = len(layers)
        self.heads = torch.as_tensor(heads, dtype=torch.int64, device=self.device)
        self.store_name = "float32" if stats_only else store_dtype
        self.store_dtype = torch_storage_dtype(self.store_name)
        self.stats_only = stats_only
        self.cuda = self.device.type == "cuda"
        self.transfer = host_transfer(self.device)

    def _inputs(self, batch: TokenBatch) -> dict[str, torch.Tensor]:
        arrays = {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask}
        if self.loaded.token_types:  # RoBERTa, XLM-R, DistilBERT take no segment ids
            arrays["token_type_ids"] = batch.token_type_ids
        if not self.cuda:
            return {k: torch.from_numpy(v) for k, v in arrays.items()}
        return {k: torch.from_numpy(v).pin_memory().to(self.device, non_blocking=True) for k, v in arrays.items()}

    @torch.inference_mode()
    def submit(self, batch: TokenBatch) -> Done | _CudaPending:
        inputs = self._inputs(batch)
        if self.stats_only:
            return self._submit_stats(batch, inputs)
        lengths = torch.from_numpy(batch.lengths.astype(np.int64)).to(self.device, non_blocking=self.cuda)
        total_layer = int(self.heads.numel() * (batch.lengths.astype(np.int64) ** 2).sum())
        index = packing_index(
            lengths, total_layer, batch.input_ids.shape[1], self.heads, self.loaded.num_heads, self.n_layers_kept
        )
        out = torch.empty(index.total, dtype=self.store_dtype, device=self.device)
        try:
            with capturing(_Collector(self.layer_pos, index, out, self.store_name)):
                self.loaded.model(**inputs)
        except CaptureComplete:
            pass
        if self.transfer is None:
            return Done(PackedBatch(attn=_as_storage(out.numpy()), lengths=batch.lengths))
        return self.transfer.start(out, batch.lengths)

    def _submit_stats(self, batch: TokenBatch, inputs: dict[str, torch.Tensor]) -> Done | _CudaPending:
        from attnx.engine.stats import NF

        dev = self.device
        masks = {
            "lengths": torch.from_numpy(batch.lengths.astype(np.int64)).to(dev),
            "len_a": torch.from_numpy(batch.len_a.astype(np.int64)).to(dev),
            "sep": torch.from_numpy(batch.sep).to(dev),
            "punct": torch.from_numpy(batch.punct).to(dev),
        }
        out = torch.empty(
            len(batch.lengths), self.n_layers_kept, self.heads.numel(), NF, dtype=torch.float32, device=dev
        )
        try:
            with capturing(_FeatureCollector(self.layer_pos, self.heads, masks, out)):
                self.loaded.model(**inputs)
        except CaptureComplete:
            pass
        flat = out.reshape(-1)
        if self.transfer is None:
            return Done(PackedBatch(attn=flat.numpy(), lengths=batch.lengths))
        return self.transfer.start(flat, batch.lengths)

    def close(self) -> None:
        if self.transfer is not None:
            self.transfer.close()
