"""QUANTIZE and DEQUANTIZE: the ops between float32, uint8 and int8, bit-exact with TFLM.

- float32 -> int8 or uint8 (AffineQuantize): a float division by the output scale, rounding
  halves away from zero, the zero point added, saturated. Single-precision float only, as
  TFLM computes it, so soft-float cores (Cortex-M0+, M3) give the same bits through libgcc's
  IEEE arithmetic.
- 8-bit -> 8-bit (Requantize): between int8 and uint8 with equal scales and zero points 128
  apart (a model's uint8 input or output around an int8 inside), each byte plus or minus 128,
  four bytes per word where unaligned words are allowed: TFLM's own fast path (x ^ 0x80).
  Any other pair of quantizations: a 256-entry table made by running the reference kernel on
  every input byte, so it is TFLite's fixed-point arithmetic by construction; one load per
  element.
- int8 or uint8 -> float32 (Dequantize): (float)scale * (q - zero_point), one float multiply.

Element i is read before element i is written and no output element is wider than its input,
so QUANTIZE may write over its input; DEQUANTIZE widens (four bytes per element) and may not.
Portable C.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..c_types import c_type, float_literal
from ..ir import TYPE_RANGES, Dequantize, Graph, Op, Quantize
from ..targets import Target
from .lowering import FeatureMap, feature_map
from .variant import ConstArray, Isa, LayerNames, Order, Variant, target_isas


@dataclass(frozen=True)
class AffineQuantize:
    """AffineQuantize's cases, decided here: q = clamp(round(x / scale) + zero_point, low,
    high) for quotients within +-256 (beyond, the clamp decides whatever the zero point);
    saturation up to int32's range; and what TFLite computes on x86 where C++ leaves it
    undefined (see reference.affine_quantize): NaN, infinities and quotients beyond int32
    convert to INT32_MIN, then the zero point is added with wrap-around (``overflow``), and a
    sum that passes INT32_MAX wraps to a negative number (from ``wrap_from`` on)."""

    scale: str  # a C float literal: the output's float32 scale
    zero_point: int
    low: int
    high: int
    overflow: int  # INT32_MIN + zero_point, wrapped and clamped
    wrap_from: str | None  # C float literal; None when no quotient below 2^31 wraps


INT32_LIMIT = 2.0 ** 31


def affine_quantize(scale: float, zero_point: int, dtype: str) -> AffineQuantize:
    low, high = TYPE_RANGES[dtype]
    # The smallest float32 quotient whose round(q) + zero_point passes INT32_MAX.
    threshold = INT32_LIMIT - zero_point
    wrap_from = np.float32(threshold)
    if float(wrap_from) < threshold:  # in double: NumPy would compare in float32
        wrap_from = np.nextafter(wrap_from, np.float32(np.inf))
    wrap_from = float(wrap_from)
    return AffineQuantize(scale=float_literal(scale), zero_point=zero_point, low=low, high=high,
                          overflow=high if zero_point < 0 else low,
                          wrap_from=float_literal(wrap_from) if wrap_from < INT32_LIMIT
                          else None)


@dataclass(frozen=True)
class QuantizeFloatParams:
    output: FeatureMap  # rows of w * c elements (any rank: see lowering.feature_map)
    output_ctype: str
    affine: AffineQuantize


@dataclass(frozen=True)
class ShiftParams:
    """Requantize between int8 and uint8 at equal scales: output = input + delta (+-128)."""

    output: FeatureMap
    input_ctype: str
    output_ctype: str
    delta: int
    words: bool  # four bytes per (possibly unaligned) word: ARMv7-M and later, and hosts


@dataclass(frozen=True)
class RequantizeTableParams:
    """Requantize through a table of all 256 inputs: output = table[input + index_offset]."""

    output: FeatureMap
    output_ctype: str
    index_offset: int  # 128 for an int8 input, 0 for a uint8 one
    table: ConstArray


@dataclass(frozen=True)
class DequantizeParams:
    """Dequantize: y = scale * (float)(q - zero_point)."""

    output: FeatureMap
    input_ctype: str
    scale: str
    zero_point: int


def _tensors(op: Op, graph: Graph):
    return graph.tensor(op.input), graph.tensor(op.output)


def _from_float(op: Op, graph: Graph, target: Target) -> bool:
    return graph.tensor(op.input).dtype == "float32"


def is_shift_by_128(op: Op, graph: Graph, target: Target = None) -> bool:
    """int8 <-> uint8 with equal scales (the multiplier of 1.0, (2^30, 1)) and zero points
    128 apart, the way round that keeps every value in range."""
    x, y = _tensors(op, graph)
    if {x.dtype, y.dtype} != {"int8", "uint8"} or op.requant is None:
        return False
    if (op.requant.multiplier[0], op.requant.shift[0]) != (1 << 30, 1):
        return False
    return y.zero_point - x.zero_point == (128 if x.dtype == "int8" else -128)


def _from_8_bits(op: Op, graph: Graph, target: Target) -> bool:
    return graph.tensor(op.input).dtype in TYPE_RANGES


def _lower_quantize_float(op: Quantize, graph: Graph, target: Target,
                          names: LayerNames) -> QuantizeFloatParams:
    x, y = _tensors(op, graph)
    return QuantizeFloatParams(output=feature_map(y), output_ctype=c_type(y.dtype),
                               affine=affine_quantize(y.scale, y.zero_point, y.dtype))


def _lower_shift(op: Quantize, graph: Graph, target: Target, names: LayerNames) -> ShiftParams:
    x, y = _tensors(op, graph)
    # ARMv6-M has no unaligned word access: memcpy would go byte by byte through a call,
    # slower than the plain byte loop.
    words = target.is_host or Isa.ARMV7M in target_isas(target)
    return ShiftParams(output=feature_map(y), input_ctype=c_type(x.dtype),
                       output_ctype=c_type(y.dtype), delta=y.zero_point - x.zero_point, words=words)


def requantize_table(op: Quantize, graph: Graph) -> np.ndarray:
    """The op's output for every input byte, in the order of the input's raw values."""
    from ..reference import op_kernel

    x, y = _tensors(op, graph)
    low, high = TYPE_RANGES[x.dtype]
    every = np.arange(low, high + 1, dtype=np.int64)
    return op_kernel(op)(op, graph, every).astype(y.dtype)


def _lower_table(op: Quantize, graph: Graph, target: Target,
                 names: LayerNames) -> RequantizeTableParams:
    x, y = _tensors(op, graph)
    return RequantizeTableParams(
        output=feature_map(y), output_ctype=c_type(y.dtype), index_offset=-TYPE_RANGES[x.dtype][0],
        table=ConstArray(names.table("table"), c_type(y.dtype), requantize_table(op, graph)))


def _lower_dequantize(op: Dequantize, graph: Graph, target: Target,
                      names: LayerNames) -> DequantizeParams:
    x, y = _tensors(op, graph)
    return DequantizeParams(output=feature_map(y), input_ctype=c_type(x.dtype),
                            scale=float_literal(x.scale), zero_point=x.zero_point)


# Each computes any range of rows, so a QUANTIZE (a model's first op) can run in row bands.
QUANTIZE_FLOAT = Variant("quantize_float", (Quantize,), Isa.PORTABLE, "quantize_float",
                         Order.ELEMENTWISE, _lower_quantize_float, applies=_from_float,
                         row_ranges=True)
REQUANTIZE_SHIFT = Variant("requantize_shift", (Quantize,), Isa.PORTABLE, "requantize_shift",
                           Order.ELEMENTWISE, _lower_shift, applies=is_shift_by_128,
                           row_ranges=True)
REQUANTIZE_TABLE = Variant("requantize_table", (Quantize,), Isa.PORTABLE, "requantize_table",
                           Order.ELEMENTWISE, _lower_table, applies=_from_8_bits,
                           row_ranges=True)
DEQUANTIZE_FLOAT = Variant("dequantize_float", (Dequantize,), Isa.PORTABLE, "dequantize_float",
                           Order.SEPARATE, _lower_dequantize, row_ranges=True)

VARIANTS = (QUANTIZE_FLOAT, REQUANTIZE_SHIFT, REQUANTIZE_TABLE, DEQUANTIZE_FLOAT)
