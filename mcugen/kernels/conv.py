"""General convolutions (any kernel, stride, dilation, padding), by im2col: each output pixel's
window, input offset added, is gathered into an int16 column in arena scratch (a padding tap
becomes 0), and each output channel is the dot product of the column with its filter row.
Two pixels go together, in raster order, sharing each filter load.

Variants (one template; the dot product and the filter layout differ):
- DSP: filter rows zero-padded to a multiple of 4 and each 4 bytes stored as w0, w2, w1, w3,
  so that SXTB16 (bytes 0 and 2, or 1 and 3 after a rotate) yields the pairs (w0, w1) and
  (w2, w3) that match the column's int16 pairs for SMLAD;
- portable: the same columns, filter rows in the model's order (padded likewise).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..ir import Conv2D, Graph, Op
from ..targets import Target
from .lowering import (FeatureMap, Requantization, Window, bias_array, ceil_to, conv_window,
                       feature_map, input_offset, model_bias, requantization)
from .pointwise import is_pointwise
from .variant import ConstArray, Isa, LayerNames, Order, Variant

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


def filter_rows(weights: np.ndarray, sxtb16_order: bool) -> np.ndarray:
    """The filter [Cout, KH, KW, Cin] as rows padded to ROW_MULTIPLE, optionally with each 4
    bytes as w0, w2, w1, w3."""
    rows = weights.reshape(weights.shape[0], -1)
    rows = np.pad(rows, ((0, 0), (0, -rows.shape[1] % ROW_MULTIPLE)))
    if sxtb16_order:
        rows = rows.reshape(rows.shape[0], -1, 4)[:, :, [0, 2, 1, 3]]
    return rows.reshape(-1)


def _lowering(sxtb16_order: bool, dot: str):
    def lower(op: Conv2D, graph: Graph, target: Target, names: LayerNames) -> ConvParams:
        weights = graph.tensor(op.filter).data
        out_c, kh, kw, in_c = weights.shape
        window = conv_window(op, (kh, kw))
        return ConvParams(
            input=feature_map(graph.tensor(op.input)),
            output=feature_map(graph.tensor(op.output)), window=window,
            input_offset=input_offset(op, graph), depth=kh * kw * in_c,
            row=ceil_to(kh * kw * in_c, ROW_MULTIPLE),
            filter=ConstArray(names.table("filter"), "int8_t",
                              filter_rows(weights, sxtb16_order)),
            bias=bias_array(names, model_bias(op, graph, out_c)),
            out=requantization(op, graph, names, out_c), block_pixels=BLOCK_PIXELS,
            dot=dot, contiguous_rows=window.dil_w == 1)
    return lower


def column_scratch_bytes(op: Op, graph: Graph, target: Target) -> int:
    """Two int16 columns of a padded row each."""
    _, kh, kw, in_c = graph.tensor(op.filter).shape
    return BLOCK_PIXELS * 2 * ceil_to(kh * kw * in_c, ROW_MULTIPLE)


def _general(op: Op, graph: Graph, target: Target) -> bool:
    return not is_pointwise(op, graph)


CONV_S8_DSP = Variant(
    "conv_s8_dsp", (Conv2D,), Isa.DSP, "conv_s8", Order.RASTER,
    _lowering(sxtb16_order=True, dot="conv_dot_2x2_dsp"), applies=_general,
    scratch_bytes=column_scratch_bytes,
    helpers=("window_helpers", "conv_s8_helpers", "conv_s8_dsp_helpers"), row_ranges=True)
CONV_S8 = Variant(
    "conv_s8", (Conv2D,), Isa.PORTABLE, "conv_s8", Order.RASTER,
    _lowering(sxtb16_order=False, dot="conv_dot_2x2"), applies=_general,
    scratch_bytes=column_scratch_bytes, helpers=("window_helpers", "conv_s8_helpers"),
    row_ranges=True)

VARIANTS = (CONV_S8_DSP, CONV_S8)
