"""FULLY_CONNECTED: rows [N, depth] times weights [outputs, depth]. The same matrix product as
a pointwise convolution, with the pointwise templates; its rows are not pixels of an image,
and its output is never placed over its input.

Variants: DSP (two rows by two outputs per pass; with one row only the tail loop runs) for
depth % 4 == 0 and even outputs; portable C for every shape.
"""

from __future__ import annotations

from ..ir import FullyConnected, Graph
from ..targets import Target
from .lowering import FeatureMap
from .pointwise import DSP_BLOCK_PIXELS, PointwiseParams, matrix_params, pairs_of_words
from .variant import Isa, LayerNames, Order, Variant


def _lowering(block_pixels: int):
    def lower(op: FullyConnected, graph: Graph, target: Target,
              names: LayerNames) -> PointwiseParams:
        weights = graph.tensor(op.weights).data
        outputs, depth = weights.shape
        rows = graph.tensor(op.input).size // depth
        return matrix_params(weights, FeatureMap(rows, 1, depth), FeatureMap(rows, 1, outputs),
                             op, graph, names, block_pixels)
    return lower


def _dsp_shape(op: FullyConnected, graph: Graph, target: Target) -> bool:
    return pairs_of_words(*reversed(graph.tensor(op.weights).shape))


FC_S8_DSP = Variant(
    "fc_s8_dsp", (FullyConnected,), Isa.DSP, "pw_conv_s8_dsp", Order.SEPARATE,
    _lowering(DSP_BLOCK_PIXELS), applies=_dsp_shape, helpers=("pw_conv_s8_dsp_helpers",),
    row_ranges=True)
FC_S8 = Variant(
    "fc_s8", (FullyConnected,), Isa.PORTABLE, "pw_conv_s8", Order.SEPARATE, _lowering(1),
    row_ranges=True)

VARIANTS = (FC_S8_DSP, FC_S8)
