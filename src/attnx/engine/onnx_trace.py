"""Trace an encoder into the ONNX graph :mod:`attnx.engine.onnx_export` caches (torch: imported only to export)."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from attnx.engine.model import LoadedModel

TORCH_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16, "uint8": torch.uint8}


class AttentionOutputs(torch.nn.Module):
    """Wraps a BERT-family encoder: ``forward`` returns the kept layers' and heads' probabilities, nothing else.

    Returns ``(layers_kept, batch, heads_kept, T, T)`` in ``store_dtype``; padded key columns are 0,
    padded query rows are junk (the host crops them).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        layers: list[int],
        heads: list[int],
        n_heads: int,
        store_dtype: torch.dtype,
        token_types: bool = True,
    ) -> None:
        super().__init__()
        self.model = model
        self.token_types = token_types  # False: the model takes no token_type_ids (the input goes unused)
        self.layers = list(layers)
        self.heads = None if list(heads) == list(range(n_heads)) else torch.as_tensor(heads, dtype=torch.int64)
        self.store_dtype = store_dtype

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor
    ) -> torch.Tensor:
        got: dict[int, torch.Tensor] = {}

        def collect(layer_idx: int, probs: torch.Tensor) -> None:  # probs (batch, heads, T, T) fp32
            if layer_idx in self.layers:
                got[layer_idx] = probs

        from attnx.engine.capture import capturing  # transformers' modeling code: only when exporting

        extra = {"token_type_ids": token_type_ids} if self.token_types else {}
        with capturing(collect):
            self.model(input_ids=input_ids, attention_mask=attention_mask, **extra)
        attn = torch.stack([got[k] for k in self.layers], 0)  # (layers_kept, batch, heads, T, T)
        if self.heads is not None:
            attn = attn.index_select(2, self.heads.to(attn.device))  # (layers_kept, batch, heads_kept, T, T)
        if self.store_dtype == torch.uint8:
            return torch.round(attn * 255.0).to(torch.uint8)
        return attn.to(self.store_dtype)


def _example_inputs(device: torch.device, vocab_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Two records, one padded, so the traced mask path is the one that handles padding."""
    ids = torch.tensor([[101, 7592, 2088, 999, 102], [101, 7592, 102, 0, 0]], dtype=torch.int64, device=device)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], dtype=torch.int64, device=device)
    return ids % vocab_size, mask, torch.zeros_like(ids)


def trace(
    loaded: LoadedModel, layers: list[int], heads: list[int], store_dtype: str, path: Path, opset: int,
    input_names: tuple[str, ...], output_name: str,
) -> None:
    """Write ``loaded.model``'s graph, :class:`AttentionOutputs` of ``layers`` and ``heads`` in ``store_dtype``, to
    ``path`` (TorchScript exporter, dynamic batch and length; inputs and output named as given)."""
    wrapper = AttentionOutputs(
        loaded.model, layers, heads, loaded.num_heads, TORCH_DTYPES[store_dtype], token_types=loaded.token_types
    ).eval()
    axes = {name: {0: "batch", 1: "T"} for name in input_names}
    axes[output_name] = {1: "batch", 3: "T", 4: "T"}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper,
            _example_inputs(loaded.device, int(loaded.model.config.vocab_size)),
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=list(input_names),
            output_names=[output_name],
            dynamic_axes=axes,
            do_constant_folding=True,
        )
