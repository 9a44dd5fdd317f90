"""Helium (MVE) variant of the general convolutions (any kernel, stride, dilation, padding).

Each output pixel's window is gathered into an int8 column in arena scratch: the input bytes
themselves, a padding tap holding the input zero point, which with the input offset folded into
the bias (as in the depthwise kernels) contributes nothing. Inside the image an undilated
window row is one run of KW * Cin bytes, copied by (predicated) vector loads and stores; border
pixels go tap by tap. Two columns then go through the matrix product of kernels/pointwise_mve.py
(two rows by four output channels per pass, in VMLADAVA.S8 chunks), in raster order.

Windows of at most 16 bytes (a 3x3 convolution of a one-channel image: a grayscale model's
first layer, or a depthwise one of a one-channel image, which is the same product: person_detect's
first layer) take conv_s8_pixels_mve instead: a window is one vector, loaded inside the image
by one gather (VLDRB.8 with the taps' byte offsets), and four pixels' windows stay in registers
while the kernel walks the output channels with the output stage over pixels, as
pw_conv_s8_pixels_mve does (kernels/pointwise_mve.py): the matrix product's output stage per
four channels and its window copies cost more than the MACs of so shallow a window (measured on
V1 alpha 0.35 80x80x1, M55: 0.73 MACs per instruction in its first layer). Windows of 17 to 48
bytes (an RGB image's 3x3 first layer, DS-CNN's 10x4 one) take it too, as two or three
vectors: four pixels' windows go into columns in the scratch (a window row by a predicated
load and store), which the kernel reads again for each output channel. A block of four pixels
inside the image on one row is gathered without the per-pixel tests (four gathers; or window
row by window row, four loads under one VPST), and windows of two vectors take two output
channels a pass (templates/kernels/conv_s8_pixels_mve.c.j2; three vectors would need more Q
registers than there are).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..ir import Conv2D, DepthwiseConv2D, Graph, Op
from ..targets import Target
from .lowering import (FeatureMap, Interior, Window, conv_window, feature_map, interior,
                       split_weights)
from .mve import VECTOR_BYTES, Chunks, multipliers_in_range
from .pointwise import is_pointwise
from .pointwise_mve import (BLOCK_PIXELS, PIXEL_VECTORS, MveMatrixParams, MvePixelLanesParams,
                            mve_matrix_params, pixel_lanes_params)
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


# VLDRB.8's gather offsets are bytes: a window's last tap at most this far from its first.
GATHER_OFFSET_MAX = 255
# VLDRB.U8's immediate offsets reach this far.
VLDRB_OFFSET_MAX = 127
# Windows in scratch columns of at most this many vectors: the dot product holds a weight
# vector per column vector and two loads in Q registers.
WINDOW_VECTORS_MAX = 3
# A depthwise convolution of a one-channel image takes conv_s8_pixels_mve (with windows of one
# vector) from this many output channels on: with fewer, each window serves too few channels and dw_conv_s8_mve is faster
# (measured on M55: multiplier 8 on 6x6 and person_detect's 96x96, faster; 2, 3, 4, slower).
DEPTHWISE_MIN_MULTIPLIER = 8


@dataclass(frozen=True)
class MveConvPixelsParams:
    input: FeatureMap
    output: FeatureMap
    window: Window
    zero_point: int  # the input's: what a padding tap holds
    inside: Interior
    taps: tuple[int, ...]  # 16 gather offsets: the window's taps from its first byte, then 0s
    lanes: MvePixelLanesParams  # the windows (rows of depth bytes) times the filter rows
    block_pixels: int
    # Windows of several vectors: a window row's bytes (kw * Cin, consecutive in the input),
    # and a column's in the scratch (whole vectors); 0 for windows of one vector.
    run: int = 0
    column_bytes: int = 0
    # A block of four windows inside the image on one output row is gathered without the
    # per-pixel tests: windows of one vector by four gathers, of several window row by window
    # row (conv_s8_pixels_mve's block_windows). The bytes from one pixel's window to the next
    # (stride_w * Cin), 0 where that does not apply (a last pixel's offset beyond a VLDRB
    # immediate); and the window rows whose store as a whole vector would pass the column
    # (into the next one, already written: they are predicated).
    block_step: int = 0
    tail_rows: tuple[int, ...] = ()
    # Windows of two vectors and an even number of output channels: two channels a pass,
    # each column vector loaded once for both (seven Q registers; three vectors would take
    # more than the eight there are).
    channel_pairs: bool = False


def window_taps(x: FeatureMap, g: Window) -> list[int]:
    """Each tap's byte offset from the window's first byte, in the filter's order (ky, kx, c)."""
    return [ky * g.dil_h * x.row_bytes + kx * g.dil_w * x.c + c
            for ky in range(g.k_h) for kx in range(g.k_w) for c in range(x.c)]


def _conv_filter(op: Conv2D | DepthwiseConv2D, graph: Graph) -> np.ndarray:
    """The filter as a convolution's [out_c, kh, kw, in_c]: a depthwise one of a one-channel
    input ([1, kh, kw, multiplier]) is a convolution to `multiplier` channels."""
    stored = split_weights(graph.tensor(op.filter)).stored
    return stored.transpose(3, 1, 2, 0) if isinstance(op, DepthwiseConv2D) else stored


def _lower_pixels(op: Conv2D | DepthwiseConv2D, graph: Graph, target: Target,
                  names: LayerNames) -> MveConvPixelsParams:
    stored = _conv_filter(op, graph)
    out_c, kh, kw, in_c = stored.shape
    x, y = feature_map(graph.tensor(op.input)), feature_map(graph.tensor(op.output))
    window = conv_window(op, graph)
    depth = kh * kw * in_c
    taps = window_taps(x, window)[:VECTOR_BYTES]
    lanes = pixel_lanes_params(stored.reshape(out_c, depth), FeatureMap(y.pixels, 1, depth),
                               FeatureMap(y.pixels, 1, out_c), 1, op, graph, names)
    two = depth > VECTOR_BYTES
    columns = Chunks(depth).padded if two else 0
    step = window.stride_w * in_c
    block_step = step if not two or (PIXEL_VECTORS - 1) * step <= VLDRB_OFFSET_MAX else 0
    return MveConvPixelsParams(
        input=x, output=y, window=window, zero_point=graph.tensor(op.input).zero_point,
        inside=interior(x, y, window), taps=tuple(taps + [0] * (VECTOR_BYTES - len(taps))),
        lanes=lanes, block_pixels=PIXEL_VECTORS, run=kw * in_c if two else 0,
        column_bytes=columns, block_step=block_step,
        channel_pairs=columns == 2 * VECTOR_BYTES and out_c % 2 == 0,
        tail_rows=tuple(ky for ky in range(kh) if ky * kw * in_c + VECTOR_BYTES > columns)
        if two and block_step else ())


def _window_vectors(op: Op, graph: Graph) -> int:
    """The vectors a window takes in conv_s8_pixels_mve (1 to WINDOW_VECTORS_MAX), or 0 where
    it does not apply (a gather's offsets beyond a byte; a window row of several vectors not
    one run of at most 16 bytes)."""
    _, kh, kw, in_c = _conv_filter(op, graph).shape
    window = conv_window(op, graph)
    taps = window_taps(feature_map(graph.tensor(op.input)), window)
    if len(taps) <= VECTOR_BYTES:
        return 1 if taps[-1] <= GATHER_OFFSET_MAX else 0
    if (len(taps) <= WINDOW_VECTORS_MAX * VECTOR_BYTES and window.dil_w == 1
            and kw * in_c <= VECTOR_BYTES):
        return Chunks(len(taps)).count
    return 0


def _pixels_scratch_bytes(op: Op, graph: Graph, target: Target) -> int:
    """Four columns of whole vectors (none for windows of one vector, held in registers)."""
    vectors = _window_vectors(op, graph)
    return PIXEL_VECTORS * vectors * VECTOR_BYTES if vectors > 1 else 0


def _window_in_vectors(op: Op, graph: Graph, target: Target) -> bool:
    if isinstance(op, DepthwiseConv2D):
        if (graph.tensor(op.input).shape[-1] != 1 or op.depth_multiplier < DEPTHWISE_MIN_MULTIPLIER
                or not multipliers_in_range(op)):
            return False
        # Measured: a 5x5 window in two vectors (a 7x6 map, mostly border) was slower.
        return _window_vectors(op, graph) == 1
    if not _general(op, graph, target):
        return False
    return _window_vectors(op, graph) > 0


CONV_S8_MVE_PIXELS = Variant(
    "conv_s8_pixels_mve", (Conv2D, DepthwiseConv2D), Isa.MVE, "conv_s8_pixels_mve", Order.RASTER,
    _lower_pixels, applies=_window_in_vectors, scratch_bytes=_pixels_scratch_bytes,
    helpers=("mve_helpers",), row_ranges=True)
CONV_S8_MVE = Variant(
    "conv_s8_mve", (Conv2D,), Isa.MVE, "conv_s8_mve", Order.RASTER, _lower, applies=_general,
    scratch_bytes=_scratch_bytes, helpers=("mve_helpers",), row_ranges=True, legacy=True)

VARIANTS = (CONV_S8_MVE_PIXELS, CONV_S8_MVE)
