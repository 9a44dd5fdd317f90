"""FULLY_CONNECTED: rows [N, depth] times weights [outputs, depth]. The same matrix product as
a pointwise convolution, with the pointwise templates; its rows are not pixels of an image,
and its output is never placed over its input.

Variants, for every shape: DSP (the pointwise DSP kernel: three or two rows by two outputs, one row
by four outputs); portable C.
"""

from __future__ import annotations

from ..ir import FullyConnected, Graph
from ..targets import Target
from .lowering import FeatureMap
from .pointwise import (PointwiseDspParams, PointwiseParams, dsp_scratch_bytes,
                        matrix_dsp_params, matrix_params, pw_block_pixels)
from .variant import Isa, LayerNames, Order, Variant


def _lowering(block_pixels: int):
    def lower(op: FullyConnected, graph: Graph, target: Target,
              names: LayerNames) -> PointwiseParams:
        return matrix_params(graph.tensor(op.weights), *_rows(op, graph), op, graph, names,
                             block_pixels)
    return lower


def _rows(op: FullyConnected, graph: Graph) -> tuple[FeatureMap, FeatureMap]:
    outputs, depth = graph.tensor(op.weights).shape
    rows = graph.tensor(op.input).size // depth
    return FeatureMap(rows, 1, depth), FeatureMap(rows, 1, outputs)


def _lower_dsp(op: FullyConnected, graph: Graph, target: Target,
               names: LayerNames) -> PointwiseDspParams:
    return matrix_dsp_params(graph.tensor(op.weights), *_rows(op, graph), op, graph, names,
                             target)


def _dsp_scratch(op: FullyConnected, graph: Graph, target: Target) -> int:
    depth = graph.tensor(op.weights).shape[1]
    return dsp_scratch_bytes(depth, pw_block_pixels(depth))


FC_S8_DSP = Variant(
    "fc_s8_dsp", (FullyConnected,), Isa.DSP, "pw_conv_s8_dsp", Order.SEPARATE, _lower_dsp,
    scratch_bytes=_dsp_scratch, helpers=("pw_conv_s8_dsp_helpers",), row_ranges=True)
FC_S8_ARMV7M = Variant(
    "fc_s8_armv7m", (FullyConnected,), Isa.ARMV7M, "pw_conv_s8", Order.SEPARATE, _lowering(2),
    helpers=("matrix_helpers",), row_ranges=True)
FC_S8 = Variant(
    "fc_s8", (FullyConnected,), Isa.PORTABLE, "pw_conv_s8", Order.SEPARATE, _lowering(1),
    helpers=("matrix_helpers",), row_ranges=True, legacy=True)

VARIANTS = (FC_S8_DSP, FC_S8_ARMV7M, FC_S8)
