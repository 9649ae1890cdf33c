"""Cache prefetch hints usable inside numba kernels (LLVM's ``llvm.prefetch`` intrinsic).

Random row reads are latency-bound; asking for a row a few iterations before it is used
lets several cache misses overlap. A prefetch is only a hint: it changes no value and
never faults.

Example (inside an ``@njit`` function)::

    prefetch_row(syn1neg, next_target)      # every line of a 2-D array's row
    prefetch_flat(weights, offset_of_next)  # the line holding a 1-D array's element
"""

from __future__ import annotations

from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

__all__ = ["prefetch", "prefetch_flat", "prefetch_flat_l2", "prefetch_l2", "prefetch_row", "prefetch_row_for_write"]


def _emit_prefetch(context, builder, signature, args, write: int = 0, locality: int = 3):
    """Codegen shared by the intrinsics: prefetch ``array[indices...]`` (missing trailing indices are 0)."""
    array_type = signature.args[0]
    array = context.make_array(array_type)(context, builder, args[0])
    index = [context.cast(builder, value, typ, types.intp) for value, typ in zip(args[1:], signature.args[1:])]
    index += [context.get_constant(types.intp, 0)] * (array_type.ndim - len(index))
    pointer = cgutils.get_item_pointer(context, builder, array_type, array, index)
    byte_pointer = builder.bitcast(pointer, ir.IntType(8).as_pointer())
    suffix = "p0" if getattr(byte_pointer.type, "is_opaque", False) else "p0i8"
    i32 = ir.IntType(32)
    function_type = ir.FunctionType(ir.VoidType(), [byte_pointer.type, i32, i32, i32])
    function = cgutils.get_or_insert_function(builder.module, function_type, f"llvm.prefetch.{suffix}")
    # (address, read 0 / write 1, temporal locality 3 -> L1 / 2 -> L2 on x86, data cache)
    builder.call(function, [byte_pointer, i32(write), i32(locality), i32(1)])
    return context.get_dummy_value()


def _emit_prefetch_l2(context, builder, signature, args):
    """:func:`_emit_prefetch` with temporal locality 2: into L2 (x86 ``prefetcht1``)."""
    return _emit_prefetch(context, builder, signature, args, locality=2)


@intrinsic
def prefetch(typingctx, matrix, row, column):
    """Hint the CPU to start loading the cache line of ``matrix[row, column]`` (2-D)."""
    if not isinstance(matrix, types.Array) or matrix.ndim != 2:
        return None
    return types.void(matrix, row, column), _emit_prefetch


@intrinsic
def prefetch_flat(typingctx, vector, index):
    """Hint the CPU to start loading the cache line of ``vector[index]`` (1-D)."""
    if not isinstance(vector, types.Array) or vector.ndim != 1:
        return None
    return types.void(vector, index), _emit_prefetch


@intrinsic
def prefetch_flat_l2(typingctx, vector, index):
    """Like :func:`prefetch_flat`, but into L2 rather than L1 (x86 ``prefetcht1``).

    For rows read at random from tables far larger than the caches, with many lines in
    flight: int8 lookups on 1M x 32 tables ran at 75-78 M lookups/s with this hint against
    50-52 with L1 prefetches (bags of 4, 32 ids ahead, one thread, AMD EPYC). A likely
    reason: a request into L1 holds one of its few miss buffers until its line arrives.
    """
    if not isinstance(vector, types.Array) or vector.ndim != 1 or not isinstance(index, types.Integer):
        return None
    return types.void(vector, index), _emit_prefetch_l2


@intrinsic
def prefetch_l2(typingctx, matrix, row, column):
    """:func:`prefetch` into L2 (see :func:`prefetch_flat_l2` for why that can be faster)."""
    if not isinstance(matrix, types.Array) or matrix.ndim != 2:
        return None
    return types.void(matrix, row, column), _emit_prefetch_l2


@intrinsic
def prefetch_row_for_write(typingctx, matrix, row):
    """Hint that ``matrix[row, 0]`` (2-D) is about to be written."""
    if not isinstance(matrix, types.Array) or matrix.ndim != 2 or not isinstance(row, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        return _emit_prefetch(context, builder, signature, args, write=1)

    return types.void(matrix, row), codegen


@njit(cache=True, nogil=True)
def prefetch_row(matrix, row):
    """Prefetch every 64-byte line of ``matrix[row]`` (a C-ordered float32 row)."""
    for column in range(0, matrix.shape[1], 16):
        prefetch(matrix, row, column)
