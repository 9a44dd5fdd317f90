"""MEAN over any run of consecutive axes but H and W (those run the image kernels of
pooling.py): MCUNet's means over W, then H, of an NCHW tensor.

The input is read as [outer, count, inner], the reduced axes in the middle; each output is
TFLM's QuantizedMeanOrSum of its count values: their sum less zp_in x count, by the
multiplier with 1/count folded in, plus zp_out, clamped (also with equal input and output
quantization: the tflite-micro runtime requantizes then too). Portable C.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..ir import Graph, Mean
from ..quant import mean_multiplier
from ..targets import Target
from .lowering import Clamp, clamp, input_offset
from .variant import Isa, LayerNames, Order, Variant


@dataclass(frozen=True)
class MeanAxesParams:
    outer: int
    count: int  # the elements each output averages
    inner: int
    input_offset: int
    multiplier: int
    shift: int
    clamp: Clamp


def is_image_mean(op: Mean, graph: Graph, target: Target) -> bool:
    """A mean over H and W of an NHWC tensor: pooling.py's kernels."""
    return len(graph.tensor(op.input).shape) == 4 and op.axes == (1, 2)


def _any_other(op: Mean, graph: Graph, target: Target) -> bool:
    return not is_image_mean(op, graph, target)


def _lower(op: Mean, graph: Graph, target: Target, names: LayerNames) -> MeanAxesParams:
    shape = graph.tensor(op.input).shape
    first, last = op.axes[0], op.axes[-1] + 1
    count = int(np.prod(shape[first:last]))
    multiplier, shift = mean_multiplier(op.requant.multiplier[0], op.requant.shift[0], count)
    return MeanAxesParams(outer=int(np.prod(shape[:first])), count=count,
                          inner=int(np.prod(shape[last:])),
                          input_offset=input_offset(op, graph), multiplier=multiplier,
                          shift=shift, clamp=clamp(op, graph))


MEAN_AXES_S8 = Variant("mean_axes_s8", (Mean,), Isa.PORTABLE, "mean_axes_s8", Order.SEPARATE,
                       _lower, applies=_any_other)

VARIANTS = (MEAN_AXES_S8,)
