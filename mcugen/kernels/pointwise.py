"""1x1 convolutions (stride 1, no padding): a matrix product of the pixels [P, Cin] with the
filter [Cout, Cin], one output pixel after another (raster order).

Variants: DSP (two pixels by two output channels per pass, four int8 products per pair of
SMLAD) for Cin % 4 == 0 and even Cout; portable C for every shape.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..ir import Conv2D, Graph, Op
from ..targets import Target
from .lowering import (FeatureMap, Requantization, bias_array, feature_map, folded_bias,
                       model_bias, requantization)
from .variant import ConstArray, Isa, LayerNames, Order, Variant


@dataclass(frozen=True)
class PointwiseParams:
    input: FeatureMap  # pixels (or rows of a fully connected layer) x Cin
    output: FeatureMap
    filter: ConstArray  # [Cout][Cin], the model's layout
    bias: ConstArray  # the input offset folded in: there is no padding to skip
    out: Requantization
    block_pixels: int  # pixels computed together (their writes may precede the block's reads)


DSP_BLOCK_PIXELS = 2


def is_pointwise(op: Op, graph: Graph, target: Target | None = None) -> bool:
    if not isinstance(op, Conv2D):
        return False
    kh, kw = graph.tensor(op.filter).shape[1:3]
    return (kh, kw) == (1, 1) and op.stride == (1, 1) and op.padding.is_zero


def pairs_of_words(in_c: int, out_c: int) -> bool:
    """The DSP loop's shape: Cin in words of four int8s, Cout in pairs."""
    return in_c % 4 == 0 and out_c % 2 == 0


def matrix_params(weights, rows: FeatureMap, outputs: FeatureMap, op: Op, graph: Graph,
                  names: LayerNames, block_pixels: int) -> PointwiseParams:
    """The parameters of a product of rows [P, depth] with weights [outputs, depth]."""
    bias = folded_bias(model_bias(op, graph, outputs.c), weights,
                       graph.tensor(op.input).zero_point)
    return PointwiseParams(
        input=rows, output=outputs,
        filter=ConstArray(names.table("filter"), "int8_t", weights.reshape(-1)),
        bias=bias_array(names, bias), out=requantization(op, graph, names, outputs.c),
        block_pixels=block_pixels)


def _lowering(block_pixels: int):
    def lower(op: Conv2D, graph: Graph, target: Target, names: LayerNames) -> PointwiseParams:
        return matrix_params(graph.tensor(op.filter).data, feature_map(graph.tensor(op.input)),
                             feature_map(graph.tensor(op.output)), op, graph, names,
                             block_pixels)
    return lower


def _dsp_shape(op: Op, graph: Graph, target: Target) -> bool:
    out_c, _, _, in_c = graph.tensor(op.filter).shape
    return is_pointwise(op, graph) and pairs_of_words(in_c, out_c)


PW_CONV_S8_DSP = Variant(
    "pw_conv_s8_dsp", (Conv2D,), Isa.DSP, "pw_conv_s8_dsp", Order.RASTER,
    _lowering(DSP_BLOCK_PIXELS), applies=_dsp_shape, helpers=("pw_conv_s8_dsp_helpers",),
    row_ranges=True)
PW_CONV_S8 = Variant(
    "pw_conv_s8", (Conv2D,), Isa.PORTABLE, "pw_conv_s8", Order.RASTER, _lowering(1),
    applies=is_pointwise, row_ranges=True)

VARIANTS = (PW_CONV_S8_DSP, PW_CONV_S8)
