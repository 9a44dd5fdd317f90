"""AVERAGE_POOL_2D and MEAN over H and W.

Portable C only: in MobileNets both run once, on the last small map.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..ir import AveragePool2D, Graph, Mean
from .reduce import is_image_mean
from ..quant import mean_multiplier
from ..targets import Target
from .lowering import (Clamp, FeatureMap, Window, clamp, conv_window, feature_map,
                       input_offset)
from .variant import Isa, LayerNames, Order, Variant


@dataclass(frozen=True)
class AveragePoolParams:
    """TFLite's int8 average: the sum over the real (unpadded) taps divided by their count,
    rounded half away from zero; input and output share their quantization."""

    input: FeatureMap
    output: FeatureMap
    window: Window
    clamp: Clamp
    # A uint8 model's average (ir.AveragePool2D.legacy): TFLite's uint8 kernel rounds the
    # non-negative uint8 sum half up; here on the values shifted back by +128.
    legacy: bool = False


def _lower_average_pool(op: AveragePool2D, graph: Graph, target: Target,
                        names: LayerNames) -> AveragePoolParams:
    window = conv_window(op, graph)
    return AveragePoolParams(input=feature_map(graph.tensor(op.input)),
                             output=feature_map(graph.tensor(op.output)), window=window,
                             clamp=clamp(op, graph), legacy=op.legacy)


@dataclass(frozen=True)
class MeanParams:
    """TFLite's QuantizedMeanOrSum: the sum less zero point x count, requantized with 1/count
    folded into the multiplier (quant.mean_multiplier), plus the output zero point."""

    input: FeatureMap
    input_offset: int
    multiplier: int
    shift: int
    clamp: Clamp


def _lower_mean(op: Mean, graph: Graph, target: Target, names: LayerNames) -> MeanParams:
    x = feature_map(graph.tensor(op.input))
    multiplier, shift = mean_multiplier(op.requant.multiplier[0], op.requant.shift[0],
                                        x.pixels)
    return MeanParams(input=x, input_offset=input_offset(op, graph), multiplier=multiplier,
                      shift=shift, clamp=clamp(op, graph))


AVGPOOL_S8 = Variant("avgpool_s8", (AveragePool2D,), Isa.PORTABLE, "avgpool_s8",
                     Order.SEPARATE, _lower_average_pool, helpers=("window_helpers",),
                     legacy=True)
MEAN_S8 = Variant("mean_s8", (Mean,), Isa.PORTABLE, "mean_s8", Order.SEPARATE, _lower_mean,
                  applies=is_image_mean)

VARIANTS = (AVGPOOL_S8, MEAN_S8)
