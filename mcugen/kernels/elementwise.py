"""Elementwise ops: ADD and MUL with numpy-style broadcasting (either operand an activation
or a constant), and 256-entry lookup tables (every int8 -> int8 op, see passes.lookup_table).

Element i of every input is read before element i of the output is written, so the output
may take the place of an input of its own shape. Portable C. (A lookup four bytes per word
load and store on ARMv7-M was tried: GCC's unrolled byte loop already takes as few
instructions, 3.75 per element on Cortex-M7, as the word form's extracts and table loads.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..ir import Add, Graph, Mul, TableLookup
from ..targets import Target
from .lowering import Clamp, FeatureMap, clamp, feature_map, input_offset
from .variant import ConstArray, Isa, LayerNames, Order, Variant


@dataclass(frozen=True)
class Strides:
    """An operand's element strides along the output's H, W and C (0 where it broadcasts)."""

    h: int
    w: int
    c: int


def as_4d(shape: tuple[int, ...]) -> tuple[int, ...]:
    """A lower rank padded with ones in front, as TFLite broadcasts."""
    return (1,) * (4 - len(shape)) + tuple(shape)


def broadcast_strides(shape: tuple[int, ...], out_shape: tuple[int, ...]) -> Strides:
    _, h, w, c = as_4d(shape)
    _, out_h, out_w, out_c = as_4d(out_shape)
    return Strides(h=w * c if h == out_h else 0, w=c if w == out_w else 0,
                   c=1 if c == out_c else 0)


@dataclass(frozen=True)
class AddConstants:
    """TFLite's int8 ADD: each input less its zero point, shifted left by left_shift and
    rescaled to a common scale; the sum rescaled to the output. Right shifts only."""

    left_shift: int
    input1_multiplier: int
    input1_shift: int
    input2_multiplier: int
    input2_shift: int
    output_multiplier: int
    output_shift: int


@dataclass(frozen=True)
class MulConstants:
    """TFLite's int8 MUL: the product of the centred inputs requantized to the output."""

    output_multiplier: int
    output_shift: int


@dataclass(frozen=True)
class ElementwiseParams:
    output: FeatureMap  # the output as NHWC (a lower rank padded in front)
    input_offset: int
    input2_offset: int
    a: Strides
    b: Strides
    flat: bool  # both operands have the output's shape: one index for all three
    operand2: ConstArray | None  # a constant second operand, as a table
    constants: AddConstants | MulConstants
    clamp: Clamp


def operand2_table(op: Add | Mul, graph: Graph, names: LayerNames) -> ConstArray | None:
    """A constant second operand as a table in flash (its pointer replaces the activation's)."""
    tensor = graph.tensor(op.input2)
    if not tensor.is_constant:
        return None
    return ConstArray(names.table("operand2"), "int8_t", tensor.data.reshape(-1))


def _lower_binary(op: Add | Mul, graph: Graph, target: Target,
                  names: LayerNames) -> ElementwiseParams:
    x1, x2, y = (graph.tensor(n) for n in (op.input, op.input2, op.output))
    _, out_h, out_w, out_c = as_4d(y.shape)
    if isinstance(op, Add):
        r = op.rescale
        constants = AddConstants(r.left_shift, *r.input1, *r.input2, *r.output)
    else:
        constants = MulConstants(op.requant.multiplier[0], op.requant.shift[0])
    return ElementwiseParams(
        output=FeatureMap(out_h, out_w, out_c), input_offset=input_offset(op, graph),
        input2_offset=-x2.zero_point, a=broadcast_strides(x1.shape, y.shape),
        b=broadcast_strides(x2.shape, y.shape), flat=x1.shape == x2.shape == y.shape,
        operand2=operand2_table(op, graph, names), constants=constants, clamp=clamp(op, graph))


@dataclass(frozen=True)
class LookupParams:
    output: FeatureMap
    table: ConstArray  # output = table[input + 128]


def _lower_lookup(op: TableLookup, graph: Graph, target: Target,
                  names: LayerNames) -> LookupParams:
    return LookupParams(output=feature_map(graph.tensor(op.output)),
                        table=ConstArray(names.table("table"), "int8_t",
                                         np.array(op.table, np.int8)))


# Residual ADDs of one shape (MobileNetV2's blocks) differ in their offsets and rescaling
# alone: those are data, passed to a shared function (a few values kept in registers).
ADD_S8 = Variant("add_s8", (Add,), Isa.PORTABLE, "add_s8", Order.ELEMENTWISE, _lower_binary,
                 row_ranges=True, binary=True, data_scalars=(
                     "input_offset", "input2_offset", "constants.input1_multiplier",
                     "constants.input1_shift", "constants.input2_multiplier",
                     "constants.input2_shift", "constants.output_multiplier",
                     "constants.output_shift", "clamp.output_offset"))
MUL_S8 = Variant("mul_s8", (Mul,), Isa.PORTABLE, "mul_s8", Order.ELEMENTWISE, _lower_binary,
                 row_ranges=True, binary=True)
LOOKUP_S8 = Variant("lookup_s8", (TableLookup,), Isa.PORTABLE, "lookup_s8", Order.ELEMENTWISE,
                    _lower_lookup, row_ranges=True)

VARIANTS = (ADD_S8, MUL_S8, LOOKUP_S8)
