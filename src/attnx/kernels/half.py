"""float16 in numba kernels: the bit pattern (uint16) converted in registers (LLVM ``fpext half -> float``, the
F16C instruction, vectorisable). numba has no float16 type on the CPU.

A module of its own, importing only numba and llvmlite, so that the store's value checks
(:mod:`attnx.store.checks_kernels`) and the analysis kernels (:mod:`attnx.kernels.common`) share it without the
store importing the kernels' other modules.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.extending import intrinsic


@intrinsic
def half_to_float(typingctx, x):  # noqa: ANN001, ANN201
    """float16 bit pattern (uint16) -> float32, in registers."""
    sig = types.float32(types.uint16)

    def codegen(context, builder, signature, args):  # noqa: ANN001, ANN202
        return builder.fpext(builder.bitcast(args[0], ir.HalfType()), ir.FloatType())

    return sig, codegen


@intrinsic
def bits_to_float(typingctx, x):  # noqa: ANN001, ANN201
    """float32 bit pattern (uint32) -> float32, a reinterpretation in registers."""
    sig = types.float32(types.uint32)

    def codegen(context, builder, signature, args):  # noqa: ANN001, ANN202
        return builder.bitcast(args[0], ir.FloatType())

    return sig, codegen
