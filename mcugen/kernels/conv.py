"""General convolutions (any kernel, stride, dilation, padding), by im2col: each output pixel's
window, input offset added, is gathered into an int16 column in arena scratch (a padding tap
becomes 0), and each output channel is the dot product of the column with its filter row.
Two pixels go together, in raster order, sharing each filter load.

Variants:
- DSP: each pixel's window gathered as int8 (the zero point for taps outside the image, so
  the input offset folds into the bias), then the pointwise DSP kernel's matrix product:
  the window sign-extended into int16 lanes, two pixels by two channels of SMLAD, the short
  requantization where the bounds allow it (kernels/pointwise.py);
- portable: int16 columns with the input offset added, filter rows padded to a multiple of 4.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..ir import Conv2D, Graph, Op
from ..targets import Target
from .lowering import (FeatureMap, Requantization, Window, bias_array, ceil_to, conv_window,
                       feature_map, input_offset, model_bias, requantization, split_weights)
from .pointwise import (DSP_BLOCK_PIXELS, MatrixDsp, dsp_scratch_bytes, is_pointwise, matrix_dsp,
                        rows_in_whole_blocks)
from .variant import ConstArray, Isa, LayerNames, Order, Variant, per_mac

ROW_MULTIPLE = 4  # the dot products take four int8 weights at a time
BLOCK_PIXELS = 2


@dataclass(frozen=True)
class ConvParams:
    input: FeatureMap
    output: FeatureMap
    window: Window
    input_offset: int
    depth: int  # KH * KW * Cin: a window's values
    row: int  # depth rounded up to ROW_MULTIPLE: a filter row, and a column, with zeros after
    filter: ConstArray  # [Cout][row]
    bias: ConstArray  # the model's: padding taps are 0 in the column, after the offset
    out: Requantization
    block_pixels: int
    dot: str  # the C function of the 2x2 dot product (templates/kernels/conv_s8*_helpers)
    contiguous_rows: bool  # undilated columns: a window row inside the image is one copy
    # The weight offset (lowering.SplitWeights): offset * (the sum of the column, which holds
    # x - zp) per pixel; the bias is the model's.
    offset: int = 0


def filter_rows(weights: np.ndarray) -> np.ndarray:
    """The filter [Cout, KH, KW, Cin] as rows padded to ROW_MULTIPLE."""
    rows = weights.reshape(weights.shape[0], -1)
    return np.pad(rows, ((0, 0), (0, -rows.shape[1] % ROW_MULTIPLE))).reshape(-1)


def _lowering(dot: str):
    def lower(op: Conv2D, graph: Graph, target: Target, names: LayerNames) -> ConvParams:
        split = split_weights(graph.tensor(op.filter))
        weights = split.stored
        out_c, kh, kw, in_c = weights.shape
        window = conv_window(op, graph)
        return ConvParams(
            input=feature_map(graph.tensor(op.input)),
            output=feature_map(graph.tensor(op.output)), window=window,
            input_offset=input_offset(op, graph), depth=kh * kw * in_c,
            row=ceil_to(kh * kw * in_c, ROW_MULTIPLE),
            filter=ConstArray(names.table("filter"), "int8_t",
                              filter_rows(weights)),
            bias=bias_array(names, model_bias(op, graph, out_c)),
            out=requantization(op, graph, names, out_c), block_pixels=BLOCK_PIXELS,
            dot=dot, contiguous_rows=window.dil_w == 1, offset=split.offset)
    return lower


@dataclass(frozen=True)
class ConvDspParams:
    input: FeatureMap
    output: FeatureMap
    window: Window
    zero_point: int  # the value of every tap outside the image
    matrix: MatrixDsp  # columns of KH * KW * Cin, filter rows in the model's order
    contiguous_rows: bool  # undilated: a window row inside the image is one copy
    block_pixels: int

    @property
    def whole_blocks(self) -> bool:
        return rows_in_whole_blocks(self.output, self.block_pixels)


def _lower_dsp(op: Conv2D, graph: Graph, target: Target, names: LayerNames) -> ConvDspParams:
    split = split_weights(graph.tensor(op.filter))
    out_c, kh, kw, in_c = split.stored.shape
    window = conv_window(op, graph)
    return ConvDspParams(
        input=feature_map(graph.tensor(op.input)), output=feature_map(graph.tensor(op.output)),
        window=window, zero_point=graph.tensor(op.input).zero_point,
        matrix=matrix_dsp(split, op, graph, names, target),
        contiguous_rows=window.dil_w == 1, block_pixels=DSP_BLOCK_PIXELS)


def _dsp_scratch(op: Conv2D, graph: Graph, target: Target) -> int:
    _, kh, kw, in_c = graph.tensor(op.filter).shape
    return dsp_scratch_bytes(kh * kw * in_c)


def column_scratch_bytes(op: Op, graph: Graph, target: Target) -> int:
    """Two int16 columns of a padded row each."""
    _, kh, kw, in_c = graph.tensor(op.filter).shape
    return BLOCK_PIXELS * 2 * ceil_to(kh * kw * in_c, ROW_MULTIPLE)


def _general(op: Op, graph: Graph, target: Target) -> bool:
    return not is_pointwise(op, graph)


CONV_S8_DSP = Variant(
    "conv_s8_dsp", (Conv2D,), Isa.DSP, "conv_s8_dsp", Order.RASTER, _lower_dsp,
    applies=_general, scratch_bytes=_dsp_scratch,
    # Beyond conv_s8_rows_dsp (VWW's first layer on Cortex-M7: 0.76 instructions per MAC).
    helpers=("window_helpers", "pw_conv_s8_dsp_helpers"), row_ranges=True, legacy=True,
    slower_per_mac=per_mac(0.76))
CONV_S8 = Variant(
    "conv_s8", (Conv2D,), Isa.PORTABLE, "conv_s8", Order.RASTER,
    _lowering(dot="conv_dot_2x2"), applies=_general,
    scratch_bytes=column_scratch_bytes, helpers=("window_helpers", "conv_s8_helpers"),
    row_ranges=True, legacy=True, columns=True)

VARIANTS = (CONV_S8_DSP, CONV_S8)
