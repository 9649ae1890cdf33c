"""A numba intrinsic that asks the CPU to start loading a table row before it is needed.

The id map's work per id is a few dependent loads from arrays far larger than the caches
(hash slots, row metadata). Issuing the load of the row a later id will need, while the
current one is processed, overlaps those memory waits (``llvm.prefetch``; a hint only:
it never faults and changes no result).
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

__all__ = ["prefetch_row"]


@intrinsic
def prefetch_row(typingctx, array, row):
    """Prefetch ``array[row, 0]`` of a 2-D array, for writing, into every cache level."""
    if not isinstance(array, types.Array) or array.ndim != 2 or not isinstance(row, types.Integer):
        return None
    sig = types.void(array, row)

    def codegen(context, builder, signature, args):
        array_type = signature.args[0]
        view = context.make_array(array_type)(context, builder, args[0])
        zero = context.get_constant(types.intp, 0)
        index = context.cast(builder, args[1], signature.args[1], types.intp)
        pointer = cgutils.get_item_pointer2(
            context, builder, data=view.data, shape=cgutils.unpack_tuple(builder, view.shape),
            strides=cgutils.unpack_tuple(builder, view.strides), layout=array_type.layout,
            inds=[index, zero], wraparound=False,
        )
        byte_ptr = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [byte_ptr, i32, i32, i32]), "llvm.prefetch.p0i8")
        # (address, write = 1, locality = 3: keep in all levels, data cache = 1)
        builder.call(fn, [builder.bitcast(pointer, byte_ptr), i32(1), i32(3), i32(1)])
        return context.get_dummy_value()

    return sig, codegen
