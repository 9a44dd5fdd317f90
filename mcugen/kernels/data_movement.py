"""Ops that only move bytes: PAD (zero-point padding over H and W), a RESHAPE that could not
be elided (a copy), TRANSPOSE, the CONCATENATION that joins column tiles and the column slice
that keeps a tile's halo (tiles.py). Portable C. Each computes any range of its output's rows
(geometry.py: PAD reads the rows it shifts, the others their whole input), so that a model
that starts with one runs in row bands from its first layer."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from ..ir import ConcatColumns, Graph, Pad, Reshape, SliceColumns, Transpose
from ..targets import Target
from .elementwise import as_4d
from .lowering import FeatureMap, feature_map
from .variant import Isa, LayerNames, Order, Variant


@dataclass(frozen=True)
class PadParams:
    input: FeatureMap
    output: FeatureMap
    pad_top: int
    pad_left: int
    value: int  # the output's zero point
    block_pixels: int = 1


def _lower_pad(op: Pad, graph: Graph, target: Target, names: LayerNames) -> PadParams:
    return PadParams(input=feature_map(graph.tensor(op.input)),
                     output=feature_map(graph.tensor(op.output)), pad_top=op.padding.top,
                     pad_left=op.padding.left, value=graph.tensor(op.output).zero_point)


def _as_rows(shape: tuple[int, ...]) -> FeatureMap:
    """A layout op's output as rows a step may compute: an image's (batch 1) H rows of W x C;
    any other shape, one row of everything."""
    if len(shape) == 4 and shape[0] == 1:
        return FeatureMap(shape[1], shape[2], shape[3])
    return FeatureMap(1, 1, int(np.prod(shape)))


@dataclass(frozen=True)
class CopyParams:
    """The bytes, unchanged: output rows [begin, end) are the input's bytes at the same
    place (the input is read whole, from its first byte)."""

    size: int
    output: FeatureMap


def _lower_copy(op: Reshape, graph: Graph, target: Target, names: LayerNames) -> CopyParams:
    return CopyParams(size=graph.tensor(op.input).size,
                      output=_as_rows(graph.tensor(op.output).shape))


@dataclass(frozen=True)
class TransposeParams:
    """The output's four axes in order, each reading the input with the stride of the input
    axis it comes from. A step computes a range of axis 1 (an image's rows)."""

    dims: tuple[int, int, int, int]
    strides: tuple[int, int, int, int]
    output: FeatureMap


def _lower_transpose(op: Transpose, graph: Graph, target: Target,
                     names: LayerNames) -> TransposeParams:
    in_shape = as_4d(graph.tensor(op.input).shape)
    out_shape = as_4d(graph.tensor(op.output).shape)
    lead = 4 - len(op.perm)
    perm = list(range(lead)) + [axis + lead for axis in op.perm]
    in_strides = [int(np.prod(in_shape[axis + 1:])) for axis in range(4)]
    return TransposeParams(dims=tuple(out_shape),
                           strides=tuple(in_strides[perm[k]] for k in range(4)),
                           output=FeatureMap(out_shape[1], out_shape[2], out_shape[3]))


@dataclass(frozen=True)
class ConcatColumnsParams:
    """Per row: the first operand's row, then the second's (bytes of each)."""

    rows: int
    row_bytes: int
    row_bytes2: int


def _lower_concat_columns(op: ConcatColumns, graph: Graph, target: Target,
                          names: LayerNames) -> ConcatColumnsParams:
    _, h, w, c = graph.tensor(op.input).shape
    _, _, w2, _ = graph.tensor(op.input2).shape
    return ConcatColumnsParams(rows=h, row_bytes=w * c, row_bytes2=w2 * c)


@dataclass(frozen=True)
class SliceColumnsParams:
    """Per row, the input's columns [begin, begin + output.w): NHWC, a run of bytes; with
    planar rows (the input written channel-planar, kernels/depthwise_planar.py), that run of
    each channel's columns, and the output planar too."""

    input: FeatureMap
    output: FeatureMap
    begin: int
    planar_output: bool = False


def _lower_slice_columns(op: SliceColumns, graph: Graph, target: Target,
                         names: LayerNames) -> SliceColumnsParams:
    return SliceColumnsParams(input=feature_map(graph.tensor(op.input)),
                              output=feature_map(graph.tensor(op.output)), begin=op.begin)


def _lower_slice_columns_planar(op: SliceColumns, graph: Graph, target: Target,
                                names: LayerNames) -> SliceColumnsParams:
    return dataclasses.replace(_lower_slice_columns(op, graph, target, names),
                               planar_output=True)


def _chosen_with_its_input(op, graph: Graph, target: Target) -> bool:
    """Chosen where its input is planar, by kernels.planar_rows, never by first match."""
    return False


PAD_S8 = Variant("pad_s8", (Pad,), Isa.PORTABLE, "pad_s8", Order.RASTER, _lower_pad,
                 row_ranges=True)
COPY_S8 = Variant("copy_s8", (Reshape,), Isa.PORTABLE, "copy_s8", Order.SEPARATE, _lower_copy,
                  row_ranges=True)
TRANSPOSE_S8 = Variant("transpose_s8", (Transpose,), Isa.PORTABLE, "transpose_s8",
                       Order.SEPARATE, _lower_transpose, row_ranges=True)

CONCAT_COLUMNS_S8 = Variant("concat_columns_s8", (ConcatColumns,), Isa.PORTABLE,
                            "concat_columns_s8", Order.SEPARATE, _lower_concat_columns,
                            binary=True)

SLICE_COLUMNS_S8 = Variant("slice_columns_s8", (SliceColumns,), Isa.PORTABLE,
                          "slice_columns_s8", Order.SEPARATE, _lower_slice_columns,
                          row_ranges=True)
SLICE_COLUMNS_S8_PLANAR = Variant("slice_columns_s8_planar", (SliceColumns,), Isa.PORTABLE,
                                  "slice_columns_s8", Order.SEPARATE,
                                  _lower_slice_columns_planar,
                                  applies=_chosen_with_its_input, row_ranges=True)

VARIANTS = (PAD_S8, COPY_S8, TRANSPOSE_S8, CONCAT_COLUMNS_S8, SLICE_COLUMNS_S8_PLANAR,
            SLICE_COLUMNS_S8)
