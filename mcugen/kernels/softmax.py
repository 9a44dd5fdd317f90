"""SOFTMAX over the last axis: TFLite's int8 fixed-point softmax (gemmlowp's exp and
reciprocal), output scale 1/256 and zero point -128. Portable C."""

from __future__ import annotations

from dataclasses import dataclass

from ..ir import Graph, Softmax
from ..targets import Target
from .variant import Isa, LayerNames, Order, Variant


@dataclass(frozen=True)
class SoftmaxParams:
    rows: int
    row_size: int
    input_multiplier: int  # PreprocessSoftmaxScaling(beta, input scale, 5)
    input_left_shift: int
    diff_min: int  # inputs further below the row's maximum contribute nothing


def lower_softmax(op: Softmax, graph: Graph, target: Target, names: LayerNames) -> SoftmaxParams:
    size = graph.tensor(op.input).size
    row = graph.tensor(op.output).shape[-1]
    return SoftmaxParams(rows=size // row, row_size=row, input_multiplier=op.input_multiplier,
                         input_left_shift=op.input_left_shift, diff_min=op.diff_min)


SOFTMAX_S8 = Variant("softmax_s8", (Softmax,), Isa.PORTABLE, "softmax_s8", Order.SEPARATE,
                     lower_softmax, helpers=("softmax_s8_helpers",))

VARIANTS = (SOFTMAX_S8,)
