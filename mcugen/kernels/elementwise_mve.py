"""Helium (MVE) variants of the elementwise ops: ADD and MUL (TFLite's int8 arithmetic on four
int32 lanes, either operand broadcast as in kernels/elementwise.py) and 256-entry lookup tables
(sixteen bytes per gather load).

The lanes run along the channels (or along all the elements when the operands have the
output's shape); a broadcast operand is one value duplicated to every lane. Element i of every
input is read before element i of the output is written (the vectors of a pass are read before
it stores), so the output may take the place of an input of its own shape.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..ir import Add, Graph, Mul, Op, TableLookup
from ..targets import Target
from .elementwise import ElementwiseParams, _lower_binary, _lower_lookup
from .mve import INT32_LANES

INT16_LANES = 8
from .variant import Isa, LayerNames, Order, Variant


@dataclass(frozen=True)
class ScalarRequant:
    """One multiplier and shift (shift > 0: a left shift) applied to four lanes, and the
    function of templates/isa/mve.c.j2 that applies it."""

    multiplier: int
    shift: int

    @property
    def right(self) -> int:
        return min(self.shift, 0)

    @property
    def left(self) -> int:
        return max(self.shift, 0)

    @property
    def function(self) -> str:
        """mve_requantize_right_n (a right shift), mve_high_n (no shift: the high multiply
        alone), or the general mve_requantize_n."""
        if self.shift <= -1:
            return "mve_requantize_right_n"
        return "mve_high_n" if self.shift == 0 else "mve_requantize_n"


@dataclass(frozen=True)
class MveElementwiseParams:
    base: ElementwiseParams  # shapes, strides, offsets, constants, clamp (kernels/elementwise.py)
    requants: tuple[ScalarRequant, ...]  # ADD: input 1, input 2, the sum; MUL: the product
    lanes: int  # elements a pass, along the channels (or all the elements when flat)

    @property
    def output(self):
        return self.base.output

    @property
    def operand2(self):
        """A constant second operand's table (codegen passes it as the layer's input2)."""
        return self.base.operand2


def _lower(op: Add | Mul, graph: Graph, target: Target,
           names: LayerNames) -> MveElementwiseParams:
    base = _lower_binary(op, graph, target, names)
    k = base.constants
    if isinstance(op, Add):
        requants = (ScalarRequant(k.input1_multiplier, k.input1_shift),
                    ScalarRequant(k.input2_multiplier, k.input2_shift),
                    ScalarRequant(k.output_multiplier, k.output_shift))
        return MveElementwiseParams(base=base, requants=requants, lanes=INT32_LANES)
    # MUL: eight int16 lanes a pass. The inputs less their zero points are within 255 of 0,
    # so they and their sums stay int16; the products are widened to int32 by VMULLB/VMULLT
    # (even and odd lanes), requantized as four lanes each and narrowed back, saturating
    # (a value past int16 is past the int8 clamp either way), into one vector stored by bytes.
    requants = (ScalarRequant(k.output_multiplier, k.output_shift),)
    return MveElementwiseParams(base=base, requants=requants, lanes=INT16_LANES)


def _multipliers_in_range(op: Op, graph: Graph, target: Target) -> bool:
    if isinstance(op, Add):
        r = op.rescale
        return all(m >= 0 for m, _ in (r.input1, r.input2, r.output))
    return all(m >= 0 for m in op.requant.multiplier)


ADD_S8_MVE = Variant("add_s8_mve", (Add,), Isa.MVE, "add_s8_mve", Order.ELEMENTWISE, _lower,
                     applies=_multipliers_in_range, row_ranges=True, binary=True)
MUL_S8_MVE = Variant("mul_s8_mve", (Mul,), Isa.MVE, "mul_s8_mve", Order.ELEMENTWISE, _lower,
                     applies=_multipliers_in_range, row_ranges=True, binary=True)
# Sixteen lookups per gather load; each vector is read before it is written.
LOOKUP_S8_MVE = Variant("lookup_s8_mve", (TableLookup,), Isa.MVE, "lookup_s8_mve",
                        Order.ELEMENTWISE, _lower_lookup, row_ranges=True)

VARIANTS = (ADD_S8_MVE, MUL_S8_MVE, LOOKUP_S8_MVE)
