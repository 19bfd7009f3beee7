"""A store block in the form the kernels read: the one place where the store's blocks meet the kernels, so that
the kernels themselves take numpy arrays only (they never import :mod:`attnx.store`)."""

from __future__ import annotations

from attnx.kernels.common import KernelInput, kernel_input
from attnx.store.block import AttentionBlock


def block_input(block: AttentionBlock) -> KernelInput:
    """The block's stored attention (``attn``, flat, stored dtype) with the tables that decode it (``scale``)."""
    return kernel_input(block.attn, block.scale)
