"""Helium (MVE) variants of the matrix products: 1x1 convolutions and fully connected layers,
rows [P, depth] times weights [outputs, depth], any depth and any output count.

Two rows (pixels) by four output channels per pass: eight dot products in VMLADAVA.S8 chunks
(kernels/mve.py) side by side, in the eight even registers, each chunk of the two rows loaded
once for the four channels and each channel's weights once for both rows; the eight sums then
go through the output stage as two vectors of four channels. An odd last row takes one row by four channels.
The output count is padded to a multiple of four with zero weights (the padded lanes are never
stored). The input offset is folded into the bias, as in the other variants.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..ir import Conv2D, FullyConnected, Graph, Op
from ..targets import Target
from .lowering import (FeatureMap, SplitWeights, ceil_to, feature_map, folded_bias, model_bias,
                       split_weights)
from .mve import (INT32_LANES, VECTOR_BYTES, Chunks, LaneTables, OutputStage, channel_shifts,
                  multipliers_in_range, output_lane_tables, quad_rows)
from .pointwise import is_pointwise
from .variant import ConstArray, Isa, LayerNames, Order, Variant

BLOCK_PIXELS = 2
# Rows of at most this many chunks take the two-pass dot-product block (MveMatrixParams).
TWO_PASS_CHUNKS = 2
# Input depths up to this take pw_conv_s8_pixels_mve (measured on VWW's layers, M55).
PIXEL_LANES_MAX_DEPTH = 16


@dataclass(frozen=True)
class MveMatrixParams:
    input: FeatureMap  # rows (pixels) x depth
    output: FeatureMap  # rows x outputs
    chunks: Chunks  # of a row's depth
    filter: ConstArray  # kernels.mve.quad_rows of the outputs padded to quads
    tables: LaneTables  # bias (input offset folded in), multiplier, shifts, padded to quads
    out: OutputStage
    quads: int  # groups of four output channels
    last_lanes: int  # output channels of the last group (1..4)
    block_pixels: int  # rows computed together
    # The weight offset (lowering.SplitWeights): offset * (the sum of a row's inputs) joins
    # the bias of that row's four channels.
    offset: int = 0

    @property
    def two_passes(self) -> bool:
        """Two rows of few chunks take two passes of two channels (four accumulators) rather
        than eight accumulators: the eight even registers leave too few for the output stage
        around the block, which then spills more than the second load of each input chunk
        costs (measured on M55: a 22-deep layer of V1 alpha 0.35 at 80x80)."""
        return self.chunks.count <= TWO_PASS_CHUNKS

    @property
    def quad_bytes(self) -> int:
        """A group of four filter rows: where the next group starts."""
        return INT32_LANES * self.chunks.padded


def mve_matrix_params(split: SplitWeights, rows: FeatureMap, outputs: FeatureMap, op: Op,
                      graph: Graph, names: LayerNames) -> MveMatrixParams:
    chunks = Chunks(rows.c)
    padded = ceil_to(outputs.c, INT32_LANES)
    weights = split.stored.reshape(outputs.c, -1)
    bias = folded_bias(model_bias(op, graph, outputs.c), weights,
                       graph.tensor(op.input).zero_point, split.offset)
    shifts = channel_shifts(op, graph, outputs.c, padded)
    return MveMatrixParams(
        input=rows, output=outputs, chunks=chunks,
        filter=ConstArray(names.table("filter"), "int8_t",
                          quad_rows(weights.reshape(outputs.c, -1), chunks)),
        tables=output_lane_tables(names, np.pad(bias, (0, padded - outputs.c)), shifts),
        out=shifts.stage,
        quads=padded // INT32_LANES, last_lanes=outputs.c - (padded - INT32_LANES),
        block_pixels=BLOCK_PIXELS, offset=split.offset)


# ---------------------------------------------------------------------------------------------
# Narrow inputs (pw_conv_s8_pixels_mve): pixels in the lanes of the output stage

PIXEL_VECTORS = 4  # input vectors a block holds in Q registers (with two for the weights)


@dataclass(frozen=True)
class MvePixelLanesParams:
    """A 1x1 convolution whose input depth fits one VMLADAVA.S8 chunk (<= 16), computed with
    the output stage over pixels: per block, PIXEL_VECTORS input vectors stay in registers
    while the kernel walks the output channels; each channel's dot products of the block's
    pixels go through the output stage as vectors of four pixels, with the channel's
    multiplier and shift as scalars (VQRDMLAH, templates/isa/mve.c.j2), and out by a scatter
    store (the four pixels are C bytes apart). Two pixels share an input vector when their
    depths fit in 16 bytes (`pack` 2): a channel then has two weight vectors, its weights in
    lanes [0, depth) and in [depth, 2 depth), zeros elsewhere."""

    input: FeatureMap
    output: FeatureMap
    pack: int  # pixels per input vector
    filter: ConstArray  # int8 [Cout][pack][16]
    channels: ConstArray  # int32 [Cout][channel_words]: bias (input offset folded in),
    #                       multiplier, right shift (and left shift)
    channel_words: int
    out: OutputStage
    block_pixels: int  # PIXEL_VECTORS * pack: the pixels whose inputs are read together
    # The output stage may go into the block's assembly (output_in_asm): set by
    # pw_conv_s8_pixels_mve only, so that conv_s8_pixels_mve's code stays as measured.
    stage_in_asm: bool = False

    @property
    def vector_bytes(self) -> int:
        """Where a block's next input vector starts."""
        return self.pack * self.input.c

    @property
    def sums_by_vmov(self) -> bool:
        """One input vector per pixel: the block's four sums go to a vector by two VMOVs (no
        round trip through memory). With two pixels per vector the block has two vectors of
        sums, which the Q registers cannot hold besides its inputs and weights (measured: GCC
        spills, +5 % instructions on VWW's 8 -> 16 layer): they go through memory."""
        return self.pack == 1

    @property
    def output_in_asm(self) -> bool:
        """Eight sums of a block go from their dot products to eight int16 lanes in one asm
        statement (two VMOVs of lane pairs per four sums, the output stage on both vectors, a
        narrowing of each into half the lanes, the zero point by VQADD.S16), stored by one
        scatter: no round trip of the sums through memory, no output stage on four lanes.
        With two pixels per vector the eight sums are a channel's; with one, two channels'
        (an even channel count). Right shifts only: the general form (left shifts) keeps the
        stage in C (measured: V1 0.25 96's 8 -> 16 layer -18 %, its 16 -> 32 one -17 %)."""
        return (self.stage_in_asm and self.out.right_only
                and (self.pack == 2 or self.output.c % 2 == 0))

    @property
    def asm_channels(self) -> int:
        """Output channels per asm statement of output_in_asm: the eight lanes over pixels."""
        return 8 // self.block_pixels

    @property
    def spare_pixels(self) -> int:
        """Pixels past a block that its last (unpredicated) vector load reads; their lanes
        meet zero weights. Blocks that would read past the layer's rows take the predicated
        tail instead."""
        return -(-(VECTOR_BYTES - self.vector_bytes) // self.input.c)


def _pixel_lanes_shape(op: Op, graph: Graph, target: Target) -> bool:
    """Not for one pixel (a squeeze-and-excitation's 1x1 maps): a block of four or eight
    pixels would run predicated for one; the matrix product runs its one row by itself."""
    return (_pointwise_shape(op, graph, target)
            and graph.tensor(op.input).shape[-1] <= PIXEL_LANES_MAX_DEPTH
            and feature_map(graph.tensor(op.input)).pixels > 1)


def _lower_pixel_lanes(op: Conv2D, graph: Graph, target: Target,
                       names: LayerNames) -> MvePixelLanesParams:
    x, y = feature_map(graph.tensor(op.input)), feature_map(graph.tensor(op.output))
    weights = split_weights(graph.tensor(op.filter)).stored.reshape(y.c, x.c)
    return pixel_lanes_params(weights, x, y, 2 if 2 * x.c <= VECTOR_BYTES else 1, op, graph,
                              names, stage_in_asm=True)


def pixel_lanes_params(weights: np.ndarray, x: FeatureMap, y: FeatureMap, pack: int, op: Op,
                       graph: Graph, names: LayerNames,
                       stage_in_asm: bool = False) -> MvePixelLanesParams:
    """The record of rows of x.c int8s (pixels, or a convolution's windows) times the weight
    rows [y.c, x.c], `pack` rows per input vector (x.c <= 16), or one row in whole vectors
    (a filter row zero-padded to them)."""
    vectors = np.zeros((y.c, pack, VECTOR_BYTES * Chunks(pack * x.c).count), np.int8)
    for k in range(pack):
        vectors[:, k, k * x.c:(k + 1) * x.c] = weights
    bias = folded_bias(model_bias(op, graph, y.c), weights, graph.tensor(op.input).zero_point)
    shifts = channel_shifts(op, graph, y.c)
    tables = {"bias": bias, "multiplier": shifts.multiplier, "right": shifts.right}
    if shifts.stage.left:
        tables["left"] = shifts.left
    channels = np.stack([t.astype(np.int32) for t in tables.values()], axis=1)
    return MvePixelLanesParams(
        input=x, output=y, pack=pack,
        filter=ConstArray(names.table("filter"), "int8_t", vectors.reshape(-1)),
        channels=ConstArray(names.table("channels"), "int32_t", channels.reshape(-1)),
        channel_words=len(tables), out=shifts.stage, block_pixels=PIXEL_VECTORS * pack,
        stage_in_asm=stage_in_asm)


def _lower_pointwise(op: Conv2D, graph: Graph, target: Target,
                     names: LayerNames) -> MveMatrixParams:
    return mve_matrix_params(split_weights(graph.tensor(op.filter)),
                             feature_map(graph.tensor(op.input)),
                             feature_map(graph.tensor(op.output)), op, graph, names)


def _lower_fully_connected(op: FullyConnected, graph: Graph, target: Target,
                           names: LayerNames) -> MveMatrixParams:
    split = split_weights(graph.tensor(op.weights))
    outputs, depth = split.stored.shape
    rows = graph.tensor(op.input).size // depth
    return mve_matrix_params(split, FeatureMap(rows, 1, depth), FeatureMap(rows, 1, outputs),
                             op, graph, names)


def _pointwise_shape(op: Op, graph: Graph, target: Target) -> bool:
    return is_pointwise(op, graph) and multipliers_in_range(op)


def _fully_connected_shape(op: Op, graph: Graph, target: Target) -> bool:
    return multipliers_in_range(op)


PW_CONV_S8_MVE_PIXELS = Variant(
    "pw_conv_s8_pixels_mve", (Conv2D,), Isa.MVE, "pw_conv_s8_pixels_mve", Order.RASTER,
    _lower_pixel_lanes, applies=_pixel_lanes_shape, helpers=("mve_helpers",), row_ranges=True)
PW_CONV_S8_MVE = Variant(
    "pw_conv_s8_mve", (Conv2D,), Isa.MVE, "pw_conv_s8_mve", Order.RASTER, _lower_pointwise,
    applies=_pointwise_shape, helpers=("mve_helpers",), row_ranges=True, legacy=True)
FC_S8_MVE = Variant(
    "fc_s8_mve", (FullyConnected,), Isa.MVE, "pw_conv_s8_mve", Order.SEPARATE,
    _lower_fully_connected, applies=_fully_connected_shape, helpers=("mve_helpers",),
    row_ranges=True)

VARIANTS = (PW_CONV_S8_MVE_PIXELS, PW_CONV_S8_MVE, FC_S8_MVE)
