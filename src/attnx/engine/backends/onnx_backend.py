"""The ONNX Runtime backend: the exported graph (``attnx.engine.onnx_export``) run by onnxruntime.

The graph returns the kept layers' and heads' maps padded, ``(layers_kept, batch, heads_kept, T, T)``,
already in the store dtype; the host crops and packs them into the :class:`PackedBatch` layout
(record b: ``(layers, heads, l_b, l_b)`` back to back) with one strided copy per record.

CPU: ``CPUExecutionProvider``, intra-op threads = usable cores, all graph optimisations.
CUDA (``onnxruntime-gpu`` and a CUDA device): ``CUDAExecutionProvider`` with IO binding, the output left
on the device and copied to the host once per batch. The model is exported in its compute dtype (fp16 on
CUDA by default); the softmax is float32 in the graph either way.
"""

from __future__ import annotations

import numpy as np

from attnx.engine.backends.base import Done, PackedBatch, TokenBatch, packed_offsets
from attnx.engine.model import LoadedModel
from attnx.engine.onnx_export import INPUT_NAMES, OUTPUT_NAME, OnnxExportError, ensure_onnx
from attnx.stored_dtypes import encode, stored_dtype
from attnx.threads import usable_cores

GRAPH_DTYPES = ("float32", "float16", "uint8")


def pack_padded(attn: np.ndarray, lengths: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Crop and pack padded maps.

    ``attn`` (layers, batch, heads, T, T); ``lengths`` (batch,) real lengths. Returns the flat packed
    buffer: record b's ``(layers, heads, l_b, l_b)`` back to back, in ``attn``'s dtype (or ``out``'s).
    """
    n_layers, _, n_heads = attn.shape[:3]
    offsets = packed_offsets(lengths, n_layers, n_heads)
    if out is None:
        out = np.empty(int(offsets[-1]), attn.dtype)
    for b, length in enumerate(lengths.tolist()):
        dst = out[offsets[b] : offsets[b + 1]].reshape(n_layers, n_heads, length, length)
        dst[...] = attn[:, b, :, :length, :length]
    return out


class OnnxBackend:
    """Runs :class:`TokenBatch`es through onnxruntime; same :class:`PackedBatch` contract as ``TorchBackend``.

    ``layers``/``heads``: model layer and head indices to keep (sorted). The export is made (or found in
    the cache) at construction; ``export_path`` and ``export_cached`` say which.
    """

    name = "onnx"

    def __init__(
        self, loaded: LoadedModel, layers: list[int], heads: list[int], store_dtype: str, threads: int | None = None
    ) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise OnnxExportError("--backend onnx needs onnxruntime (pip install 'attnx[onnx]')") from exc

        self.ort = ort
        # the graph emits float32, float16 or uint8 (q8); q9..q16 leave it as float32 and are encoded here
        self.store_name = store_dtype
        self.graph_dtype = store_dtype if store_dtype in GRAPH_DTYPES else "float32"
        self.store_dtype = stored_dtype(store_dtype).storage
        self.n_layers, self.n_heads = len(layers), len(heads)
        cuda = loaded.device_type == "cuda"
        if cuda and "CUDAExecutionProvider" not in ort.get_available_providers():
            raise OnnxExportError(
                f"--backend onnx on {loaded.device_name}: this onnxruntime has no CUDA provider "
                "(install onnxruntime-gpu, or use --device cpu)"
            )
        if loaded.compute == "bfloat16":
            raise OnnxExportError(
                "--backend onnx: bfloat16 compute is not supported by onnxruntime; "
                "use --compute-dtype float32 (CPU) or float16 (CUDA), or --backend torch"
            )
        self.export_path, self.export_cached = ensure_onnx(loaded, layers, heads, self.graph_dtype)

        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.threads = threads or usable_cores()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # memory patterns are planned and kept per input shape; length-sorted batches bring new (batch, length)
        # shapes all run long, so the process grew with every rare shape it met (the 10^6-sentence soak: RSS
        # 1.44 -> 1.84 GB; 150 runs of distinct shapes: 590 MB with patterns, 380 MB flat without, no slower)
        opts.enable_mem_pattern = False
        opts.log_severity_level = 3
        if cuda:
            index = int(loaded.device_name.partition(":")[2] or 0)
            providers: list = [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]
            self.device_id = index
        else:
            providers = ["CPUExecutionProvider"]
            self.device_id = -1
        try:
            self.session = ort.InferenceSession(str(self.export_path), sess_options=opts, providers=providers)
        except Exception as exc:
            raise OnnxExportError(
                f"{self.export_path}: onnxruntime cannot load the export "
                f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
                "delete the file to re-export"
            ) from exc
        self.cuda = cuda
        # an export of a model without token types may have dropped that (unused) input
        self.input_names = [i.name for i in self.session.get_inputs()]

    def _run_cpu(self, batch: TokenBatch) -> np.ndarray:
        feeds = {
            "input_ids": batch.input_ids,
            "attention_mask": batch.attention_mask,
            "token_type_ids": batch.token_type_ids,
        }
        return self.session.run([OUTPUT_NAME], {k: v for k, v in feeds.items() if k in self.input_names})[0]

    def _run_cuda(self, batch: TokenBatch) -> np.ndarray:
        binding = self.session.io_binding()
        arrays = (batch.input_ids, batch.attention_mask, batch.token_type_ids)
        for name, array in zip(INPUT_NAMES, arrays, strict=True):
            if name not in self.input_names:
                continue
            value = self.ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(array), "cuda", self.device_id)
            binding.bind_ortvalue_input(name, value)
        binding.bind_output(OUTPUT_NAME, "cuda", self.device_id)  # onnxruntime allocates it on the device
        self.session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()[0]  # the one device -> host copy of the batch

    def submit(self, batch: TokenBatch) -> Done:
        attn = self._run_cuda(batch) if self.cuda else self._run_cpu(batch)  # (layers, B, heads, T, T)
        if self.graph_dtype != self.store_name:
            attn = encode(attn, self.store_name)
        packed = pack_padded(attn.astype(self.store_dtype, copy=False), batch.lengths)
        return Done(PackedBatch(attn=packed, lengths=batch.lengths))

    def close(self) -> None:
        self.session = None
