"""SOFTMAX over the last axis: TFLite's int8 fixed-point softmax (gemmlowp's exp and
reciprocal), output scale 1/256 and zero point -128. Portable C.

Every element's exp depends only on its distance to the row's maximum, an integer in
[-255, 0] for int8: the exps (gemmlowp's exp_on_negative_values of the scaled distance, Q0.31)
are tabulated at generation time, so the kernel reads one word per element in each of its two
passes instead of evaluating the polynomial and its seven factors twice (measured: about 450
instructions per element before, on Cortex-M55). Distances below diff_min count for nothing
and give -128, as a zero exp does: the table ends where they begin.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..ir import Graph, Softmax
from ..quant import exp_on_negative_values, saturating_rounding_doubling_high_mul
from ..targets import Target
from .variant import ConstArray, Isa, LayerNames, Order, Variant

# int8 inputs: an element is at most 255 below its row's maximum.
DISTANCES = 256


@dataclass(frozen=True)
class SoftmaxParams:
    rows: int
    row_size: int
    input_multiplier: int  # PreprocessSoftmaxScaling(beta, input scale, 5)
    input_left_shift: int
    diff_min: int  # inputs further below the row's maximum contribute nothing


@dataclass(frozen=True)
class SoftmaxTableParams:
    rows: int
    row_size: int
    exps: ConstArray  # int32: exps[d] is the Q0.31 exp of distance -d, for d >= diff_min

    @property
    def distances(self) -> int:
        """The table's length: the distances that count (all 256, or up to -diff_min)."""
        return self.exps.values.size

    @property
    def every_distance(self) -> bool:
        """Every distance an int8 row can have is in the table (no bounds check)."""
        return self.distances == DISTANCES


def lower_softmax(op: Softmax, graph: Graph, target: Target, names: LayerNames) -> SoftmaxParams:
    size = graph.tensor(op.input).size
    row = graph.tensor(op.output).shape[-1]
    return SoftmaxParams(rows=size // row, row_size=row, input_multiplier=op.input_multiplier,
                         input_left_shift=op.input_left_shift, diff_min=op.diff_min)


def softmax_exps(params: SoftmaxParams) -> np.ndarray:
    """exp_on_negative_values of MultiplyByQuantizedMultiplierGreaterThanOne(-d), for the
    distances d in [0, min(256, 1 - diff_min)): TFLite's per-element arithmetic
    (quant.softmax_int8), at generation time."""
    diff = -np.arange(min(DISTANCES, 1 - params.diff_min), dtype=np.int64)
    shifted = (diff << params.input_left_shift).astype(np.int32)  # |diff| << shift fits int32
    scaled = saturating_rounding_doubling_high_mul(shifted, params.input_multiplier)
    return exp_on_negative_values(scaled).astype(np.int32)


def lower_softmax_table(op: Softmax, graph: Graph, target: Target,
                        names: LayerNames) -> SoftmaxTableParams:
    params = lower_softmax(op, graph, target, names)
    return SoftmaxTableParams(rows=params.rows, row_size=params.row_size,
                              exps=ConstArray(names.table("exps"), "int32_t",
                                              softmax_exps(params)))


SOFTMAX_S8 = Variant("softmax_s8", (Softmax,), Isa.PORTABLE, "softmax_s8", Order.SEPARATE,
                     lower_softmax_table, helpers=("softmax_s8_helpers",))

VARIANTS = (SOFTMAX_S8,)
