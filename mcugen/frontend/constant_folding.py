"""Constant folding at import: the ops that compute on constants only once shapes are static.

Keras exports (TinyMaix's MobileNets, any model with a dynamic batch) compute a RESHAPE's shape
at run time: SHAPE -> STRIDED_SLICE -> PACK, sometimes with CONCATENATION, GATHER, CAST or
integer arithmetic. With batch 1 and every other shape static, all of it is a constant. Such
ops are evaluated here in NumPy, following TFLite's kernels, before any op is converted: their
outputs become constant tensors, and the ops vanish (the Graph lists them, for the report).

Only small integer ops are folded: every input and output int32 or int64 and without
quantization (a quantized constant expression is the converter's business, and TFLite's
arithmetic on it would need its own rules). SHAPE needs no constant input, only the static
shape of its input. An op whose arguments we do not evaluate (STRIDED_SLICE's ellipsis and
new-axis masks, a fused activation, GATHER's batch_dims) is left in place, and refused later
as an unsupported op, naming it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from ..errors import McugenError
from .flatbuffer import Table

INTEGER_TYPES = ("int32", "int64")


class NotFoldable(Exception):
    """The op computes on constants, but with arguments this module does not evaluate."""


# Option slots of TensorFlow's schema.fbs.
class _StridedSliceOptions:
    BEGIN_MASK, END_MASK, ELLIPSIS_MASK, NEW_AXIS_MASK, SHRINK_AXIS_MASK, OFFSET = range(6)


class _PackOptions:
    VALUES_COUNT, AXIS = 0, 1


class _ConcatenationOptions:
    AXIS, ACTIVATION = 0, 1


class _GatherOptions:
    AXIS, BATCH_DIMS = 0, 1


class _ReducerOptions:
    KEEP_DIMS = 0


_ARITHMETIC_ACTIVATION = 0  # AddOptions, SubOptions, MulOptions, DivOptions: slot 0


Evaluate = Callable[[Sequence[np.ndarray], Table, tuple[int, ...], str], np.ndarray]


def _shape(inputs, options, out_shape, out_dtype):
    """SHAPE: its input's (static) shape."""
    return np.array(inputs[0].shape, dtype=out_dtype)


def _strided_slice(inputs, options, out_shape, out_dtype):
    """reference_ops::StridedSlice: begin/end/strides per axis, masked begins and ends taking
    the whole axis (Python's open slice bounds clamp as TFLite's do), a shrunk axis keeping
    only index begin; with `offset`, end is relative to begin."""
    x, begin, end, strides = inputs
    o = _StridedSliceOptions
    if options.scalar(o.ELLIPSIS_MASK, "i", 0) or options.scalar(o.NEW_AXIS_MASK, "i", 0):
        raise NotFoldable("ellipsis and new-axis masks")
    begin_mask = options.scalar(o.BEGIN_MASK, "i", 0)
    end_mask = options.scalar(o.END_MASK, "i", 0)
    shrink = options.scalar(o.SHRINK_AXIS_MASK, "i", 0)
    offset = options.scalar(o.OFFSET, "?", False)
    index: list = []
    for axis in range(len(begin)):
        b, e, s = int(begin[axis]), int(end[axis]), int(strides[axis])
        if s == 0:
            raise NotFoldable("a zero stride")
        if offset:
            e += b
        if shrink >> axis & 1:
            size = x.shape[axis]
            if not -size <= b < size:
                raise NotFoldable("a shrunk axis indexed out of range")
            index.append(b)
            continue
        index.append(slice(None if begin_mask >> axis & 1 else b,
                           None if end_mask >> axis & 1 else e, s))
    return np.asarray(x[tuple(index)], dtype=out_dtype)


def _pack(inputs, options, out_shape, out_dtype):
    axis = options.scalar(_PackOptions.AXIS, "i", 0)
    return np.stack(inputs, axis=axis).astype(out_dtype)


def _concatenation(inputs, options, out_shape, out_dtype):
    if options.scalar(_ConcatenationOptions.ACTIVATION, "b", 0) != 0:
        raise NotFoldable("a fused activation")
    axis = options.scalar(_ConcatenationOptions.AXIS, "i", 0)
    return np.concatenate([np.atleast_1d(x) for x in inputs], axis=axis).astype(out_dtype)


def _gather(inputs, options, out_shape, out_dtype):
    if options.scalar(_GatherOptions.BATCH_DIMS, "i", 0) != 0:
        raise NotFoldable("batch_dims")
    params, indices = inputs
    axis = options.scalar(_GatherOptions.AXIS, "i", 0)
    if np.any(indices < 0) or np.any(indices >= params.shape[axis]):
        raise NotFoldable("indices out of range")
    return np.take(params, indices, axis=axis).astype(out_dtype)


def _reduce_prod(inputs, options, out_shape, out_dtype):
    """REDUCE_PROD over the axes given (negative ones counted from the end), wrapping as
    C++'s integer products do."""
    x, axes = inputs
    axes = tuple(sorted({int(a) % x.ndim for a in np.atleast_1d(axes)})) if x.ndim else ()
    keep = options.scalar(_ReducerOptions.KEEP_DIMS, "?", False)
    return np.prod(x.astype(np.int64), axis=axes, keepdims=keep).astype(out_dtype)


def _cast(inputs, options, out_shape, out_dtype):
    return inputs[0].astype(out_dtype)


def _to_shape(inputs, options, out_shape, out_dtype):
    """RESHAPE, SQUEEZE, EXPAND_DIMS of a constant: its values in the output's (static)
    shape."""
    if any(dim < 0 for dim in out_shape) or int(np.prod(out_shape)) != inputs[0].size:
        raise NotFoldable("no static output shape")
    return inputs[0].reshape(out_shape).astype(out_dtype)


def _slice(inputs, options, out_shape, out_dtype):
    """SLICE: begin and size per axis, size -1 to the end."""
    x, begin, size = inputs
    index = tuple(slice(int(b), x.shape[axis] if int(n) == -1 else int(b) + int(n))
                  for axis, (b, n) in enumerate(zip(begin, size)))
    return x[index].astype(out_dtype)


def _arithmetic(operation: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> Evaluate:
    """An elementwise integer op with broadcasting, its result wrapped to the output type as
    C++'s integer arithmetic gives it."""
    def evaluate(inputs, options, out_shape, out_dtype):
        if options.scalar(_ARITHMETIC_ACTIVATION, "b", 0) != 0:
            raise NotFoldable("a fused activation")
        a, b = (x.astype(np.int64) for x in inputs)
        return operation(a, b).astype(out_dtype)
    return evaluate


def _divide(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """TFLite's integer DIV: C++'s division, which truncates toward zero."""
    if np.any(b == 0):
        raise NotFoldable("a division by zero")
    return np.sign(a) * np.sign(b) * (np.abs(a) // np.abs(b))


def _floor_divide(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if np.any(b == 0):
        raise NotFoldable("a division by zero")
    return np.floor_divide(a, b)


FOLDERS: dict[str, Evaluate] = {
    "SHAPE": _shape,
    "STRIDED_SLICE": _strided_slice,
    "PACK": _pack,
    "CONCATENATION": _concatenation,
    "GATHER": _gather,
    "CAST": _cast,
    "RESHAPE": _to_shape,
    "SQUEEZE": _to_shape,
    "EXPAND_DIMS": _to_shape,
    "SLICE": _slice,
    "REDUCE_PROD": _reduce_prod,
    "ADD": _arithmetic(np.add),
    "SUB": _arithmetic(np.subtract),
    "MUL": _arithmetic(np.multiply),
    "DIV": _arithmetic(_divide),
    "FLOOR_DIV": _arithmetic(_floor_divide),
}
# The ops that read only their input's shape (which is static), never its values.
SHAPE_ONLY = ("SHAPE",)
# Operands an op takes that do not count (RESHAPE's optional shape: the output's is used).
_IGNORED_OPERANDS = {"RESHAPE": 1}


def operands_to_read(kind: str, count: int) -> int:
    return min(count, _IGNORED_OPERANDS.get(kind, count))


def evaluate(kind: str, where: str, inputs: Sequence, options: Table, output_dtype: str,
             output_shape: tuple[int, ...]) -> np.ndarray | None:
    """The output of op ``kind`` (its options table given) on IR tensors ``inputs``, or None
    when it does not compute on integer constants alone (or with arguments not folded here)."""
    folder = FOLDERS.get(kind)
    if folder is None or output_dtype not in INTEGER_TYPES:
        return None
    if kind in SHAPE_ONLY:
        values = [np.empty(inputs[0].shape, np.int8)]
    else:
        if not inputs or any(t.data is None or t.dtype not in INTEGER_TYPES or t.q is not None
                             for t in inputs):
            return None
        values = [t.data for t in inputs]
    try:
        return folder(values, options, output_shape, output_dtype)
    except NotFoldable:
        return None
    except (ValueError, IndexError) as error:
        raise McugenError(f"{where}: cannot evaluate it on its constant inputs: {error}") \
            from None


