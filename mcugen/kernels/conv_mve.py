"""Helium (MVE) variant of the general convolutions (any kernel, stride, dilation, padding).

Each output pixel's window is gathered into an int8 column in arena scratch: the input bytes
themselves, a padding tap holding the input zero point, which with the input offset folded into
the bias (as in the depthwise kernels) contributes nothing. Inside the image an undilated
window row is one run of KW * Cin bytes, copied by (predicated) vector loads and stores; border
pixels go tap by tap. Two columns then go through the matrix product of kernels/pointwise_mve.py
(two rows by four output channels per pass, in VMLADAVA.S8 chunks), in raster order.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..ir import Conv2D, Graph, Op
from ..targets import Target
from .lowering import (FeatureMap, Interior, Window, conv_window, feature_map, interior,
                       split_weights)
from .mve import VECTOR_BYTES, Chunks, multipliers_in_range
from .pointwise import is_pointwise
from .pointwise_mve import BLOCK_PIXELS, MveMatrixParams, mve_matrix_params
from .variant import Isa, LayerNames, Order, Variant


@dataclass(frozen=True)
class MveConvParams:
    input: FeatureMap
    output: FeatureMap
    window: Window
    zero_point: int  # the input's: what a padding tap holds
    inside: Interior
    run: Chunks  # a window row inside the image (undilated: KW * Cin consecutive bytes)
    contiguous_rows: bool  # undilated columns: a window row inside the image is one run
    column_bytes: int  # a column in the scratch: whole chunks and a vector of slack
    matrix: MveMatrixParams  # the product of the columns with the filter rows
    block_pixels: int


def _column_bytes(op: Op, graph: Graph) -> int:
    _, kh, kw, in_c = graph.tensor(op.filter).shape
    return Chunks(kh * kw * in_c).padded + VECTOR_BYTES


def _lower(op: Conv2D, graph: Graph, target: Target, names: LayerNames) -> MveConvParams:
    split = split_weights(graph.tensor(op.filter))
    out_c, kh, kw, in_c = split.stored.shape
    x, y = feature_map(graph.tensor(op.input)), feature_map(graph.tensor(op.output))
    window = conv_window(op, graph)
    depth = kh * kw * in_c
    matrix = mve_matrix_params(split, FeatureMap(y.pixels, 1, depth),
                               FeatureMap(y.pixels, 1, out_c), op, graph, names)
    return MveConvParams(
        input=x, output=y, window=window, zero_point=graph.tensor(op.input).zero_point,
        inside=interior(x, y, window), run=Chunks(kw * in_c),
        contiguous_rows=window.dil_w == 1, column_bytes=_column_bytes(op, graph),
        matrix=matrix, block_pixels=BLOCK_PIXELS)


def _scratch_bytes(op: Op, graph: Graph, target: Target) -> int:
    return BLOCK_PIXELS * _column_bytes(op, graph)


def _general(op: Op, graph: Graph, target: Target) -> bool:
    return not is_pointwise(op, graph) and multipliers_in_range(op)


CONV_S8_MVE = Variant(
    "conv_s8_mve", (Conv2D,), Isa.MVE, "conv_s8_mve", Order.RASTER, _lower, applies=_general,
    scratch_bytes=_scratch_bytes, helpers=("mve_helpers",), row_ranges=True, legacy=True)

VARIANTS = (CONV_S8_MVE,)
