"""Ablation configurations: which heads each of C passes switches off, as a bool mask ``(C, layers, heads)``."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from attnx.errors import AttnxError


@dataclass(frozen=True)
class AblationConfigs:
    """C ablation configurations. ``masks``: bool ``(C, layers, heads)``, True = head switched off.

    ``kind[c]``: ``base`` (nothing off), ``head``, ``layer`` or ``set``; ``layer[c]``/``head[c]``: the
    ablated layer/head (-1 where not applicable); ``label[c]``: e.g. ``L3H7``, ``L3``, ``3:7,5:1``.
    """

    masks: np.ndarray
    kind: list[str]
    layer: np.ndarray  # int64 (C,)
    head: np.ndarray  # int64 (C,)
    label: list[str]

    def __len__(self) -> int:
        return self.masks.shape[0]


def parse_head_set(text: str, layers: int, heads: int) -> list[tuple[int, int]]:
    """``"3:7,5:1"`` -> ``[(3, 7), (5, 1)]`` (0-based layer:head), checked against the model's shape."""
    out: list[tuple[int, int]] = []
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        try:
            layer_s, head_s = part.split(":")
            layer, head = int(layer_s), int(head_s)
        except ValueError:
            raise AttnxError(f"--heads {text!r}: expected layer:head pairs like 3:7,5:1") from None
        if not (0 <= layer < layers and 0 <= head < heads):
            raise AttnxError(f"--heads {text!r}: {layer}:{head} outside the model's {layers} x {heads} heads")
        out.append((layer, head))
    if not out:
        raise AttnxError(f"--heads {text!r}: no heads given")
    return out


def check_grid(grid: bool, head_sets: list[list[tuple[int, int]]] | None) -> None:
    """An ablation run needs something to ablate: the grid, or at least one head set."""
    if not grid and not head_sets:
        raise AttnxError("--no-grid needs at least one --heads set")


def build_configs(
    layers: int, heads: int, grid: bool = True, head_sets: list[list[tuple[int, int]]] | None = None
) -> AblationConfigs:
    """Config 0 = unablated; then (with ``grid``) every single head (layer-major) and every whole layer;
    then each user head set."""
    masks = [np.zeros((layers, heads), bool)]
    kind, lay, hd, label = ["base"], [-1], [-1], ["base"]
    if grid:
        for layer in range(layers):
            for head in range(heads):
                m = np.zeros((layers, heads), bool)
                m[layer, head] = True
                masks.append(m)
                kind.append("head")
                lay.append(layer)
                hd.append(head)
                label.append(f"L{layer}H{head}")
        for layer in range(layers):
            m = np.zeros((layers, heads), bool)
            m[layer] = True
            masks.append(m)
            kind.append("layer")
            lay.append(layer)
            hd.append(-1)
            label.append(f"L{layer}")
    for head_set in head_sets or []:
        m = np.zeros((layers, heads), bool)
        for layer, head in head_set:
            m[layer, head] = True
        masks.append(m)
        kind.append("set")
        lay.append(-1)
        hd.append(-1)
        label.append(",".join(f"{a}:{b}" for a, b in head_set))
    return AblationConfigs(np.stack(masks), kind, np.asarray(lay, np.int64), np.asarray(hd, np.int64), label)
