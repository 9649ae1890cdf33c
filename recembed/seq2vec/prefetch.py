"""A cache prefetch hint usable inside numba kernels (LLVM's ``llvm.prefetch`` intrinsic).

Example (inside an ``@njit`` function)::

    prefetch_row(syn1neg, next_target)   # start loading the row before it is needed
"""

from __future__ import annotations

from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

__all__ = ["prefetch", "prefetch_row"]


@intrinsic
def prefetch(typingctx, matrix, row, column):
    """Hint the CPU to start loading the cache line of ``matrix[row, column]``.

    Only a hint: it changes no value and never faults, so any in-bounds index is safe.
    """
    if not isinstance(matrix, types.Array) or matrix.ndim != 2:
        return None

    def codegen(context, builder, signature, args):
        array_type = signature.args[0]
        array = context.make_array(array_type)(context, builder, args[0])
        index = [context.cast(builder, args[1], signature.args[1], types.intp),
                 context.cast(builder, args[2], signature.args[2], types.intp)]
        pointer = cgutils.get_item_pointer(context, builder, array_type, array, index)
        byte_pointer = builder.bitcast(pointer, ir.IntType(8).as_pointer())
        suffix = "p0" if getattr(byte_pointer.type, "is_opaque", False) else "p0i8"
        i32 = ir.IntType(32)
        function_type = ir.FunctionType(ir.VoidType(), [byte_pointer.type, i32, i32, i32])
        prefetch = cgutils.get_or_insert_function(builder.module, function_type, f"llvm.prefetch.{suffix}")
        # (address, read, high temporal locality, data cache)
        builder.call(prefetch, [byte_pointer, i32(0), i32(3), i32(1)])
        return context.get_dummy_value()

    return types.void(matrix, row, column), codegen


@njit(cache=True, nogil=True)
def prefetch_row(matrix, row):
    """Prefetch every 64-byte line of ``matrix[row]`` (a C-ordered float32 row)."""
    for column in range(0, matrix.shape[1], 16):
        prefetch(matrix, row, column)
