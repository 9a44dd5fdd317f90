"""Depthwise convolutions (any kernel, stride, dilation, padding, depth multiplier).

Output pixels in raster order, each finished (all channels) before the next one's window is
read, so the planner may put the output over the input. Interior pixels (whole window inside
the image) take taps at constant offsets; border pixels go through tap pointers, where taps
outside the image read the input zero point, which contributes (zp + input_offset) * w = 0.
The bias has input_offset * (sum of a channel's taps) folded in at generation time, so every
tap contributes x * w alone. Channels go four at a time (four input channels with multiplier
1, or one input channel feeding four outputs with a multiplier of 4k), the rest one by one.

Variants (one layer template; their helper functions differ):
- DSP: a tap of four channels is one word, split by SXTB16 into int16 lanes, multiplied by
  SMLABB/SMLATT; layers with few weights sign-extend and double them once per call onto the
  stack, and then requantize the doubled accumulators with one SMMULR;
- portable: the same loops in C.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..ir import DepthwiseConv2D, Graph
from ..targets import Target
from .lowering import (FeatureMap, Requantization, Window, bias_array, conv_window,
                       feature_map, folded_bias, input_offset, model_bias, requantization)
from .variant import ConstArray, Isa, LayerNames, Order, Variant

# The DSP variant pre-extends a layer's weights to int16 on the stack once per call when they
# take at most this much (2 KiB: a cost in RAM that every Cortex-M part can pay).
EXTENDED_WEIGHTS_MAX_BYTES = 2048


@dataclass(frozen=True)
class DepthwisePlan:
    """Which code the layer gets."""

    blocked: int  # channels [0, blocked) go four at a time
    row_lo: int  # output rows [row_lo, row_hi) x columns [col_lo, col_hi): window inside
    row_hi: int
    col_lo: int
    col_hi: int
    has_inside: bool  # interior code exists (at least a quarter of the pixels)
    has_border: bool
    short_requantize: bool  # every accumulator below 2^30, right shifts, multipliers >= 0
    packed: bool  # weights sign-extended (and doubled) on the stack once per call


@dataclass(frozen=True)
class DepthwiseCalls:
    """The C helpers of the variant's instruction set (templates/kernels/dw_conv_s8*_helpers)."""

    mac4: str  # acc[j] += x[j] * w[j], four channels
    mac4_one: str  # acc[j] += x * w[j], one input channel feeding four outputs
    store4: str  # clamp four values to the activation's range and store them
    requantize: str  # the short requantization (DepthwisePlan.short_requantize)
    mac4_packed: str | None = None  # the same with pre-extended, doubled weights
    mac4_one_packed: str | None = None
    requantize_doubled: str | None = None  # of doubled accumulators
    next_tap: str | None = None  # orders the loads of consecutive taps (a scheduling hint)
    extend_weights: str | None = None
    double_bias: str | None = None


PORTABLE_CALLS = DepthwiseCalls(mac4="dw_mac4", mac4_one="dw_mac4_one", store4="dw_store4",
                                requantize="dw_requantize")
DSP_CALLS = DepthwiseCalls(
    mac4="dw_mac4_dsp", mac4_one="dw_mac4_one_dsp", store4="dw_store4_dsp",
    requantize="dw_requantize_dsp", mac4_packed="dw_mac4_packed",
    mac4_one_packed="dw_mac4_one_packed", requantize_doubled="dw_requantize_doubled",
    next_tap="DW_NEXT_TAP", extend_weights="dw_extend_weights", double_bias="dw_double_bias")


@dataclass(frozen=True)
class DepthwiseParams:
    input: FeatureMap
    output: FeatureMap
    window: Window
    depth_multiplier: int
    input_offset: int
    filter: ConstArray  # [KH * KW][Cout], the model's layout
    bias: ConstArray  # input offset folded in
    out: Requantization
    plan: DepthwisePlan
    calls: DepthwiseCalls
    block_pixels: int = 1


def depthwise_plan(x: FeatureMap, y: FeatureMap, window: Window, depth_multiplier: int,
                   bias: np.ndarray, out: Requantization, can_pack: bool) -> DepthwisePlan:
    """bias: the model's, before the input offset is folded in."""
    g = window
    if depth_multiplier == 1:
        blocked = y.c - y.c % 4
    else:
        blocked = y.c if depth_multiplier % 4 == 0 else 0
    row_lo = min(-(-g.pad_top // g.stride_h), y.h)
    row_hi = max(min((x.h - 1 - (g.k_h - 1) * g.dil_h + g.pad_top) // g.stride_h + 1, y.h),
                 row_lo)
    col_lo = min(-(-g.pad_left // g.stride_w), y.w)
    col_hi = max(min((x.w - 1 - (g.k_w - 1) * g.dil_w + g.pad_left) // g.stride_w + 1, y.w),
                 col_lo)
    # The interior gets its own unrolled code only where it is at least a quarter of the
    # pixels: in tiny maps (3x3 outputs of a 3x3 kernel) the border code does them all.
    inside = (row_hi - row_lo) * (col_hi - col_lo)
    has_inside = row_lo < row_hi and col_lo < col_hi and inside * 4 >= y.pixels
    has_border = not (row_lo == 0 and row_hi == y.h and col_lo == 0 and col_hi == y.w)
    # The short requantization needs every accumulator below 2^30 (bias plus taps of
    # |x + offset| <= 256 times |w| <= 128, or the folded bias plus |x * w| taps), right
    # shifts only, and multipliers that are not negative.
    bias_max = int(np.abs(bias.astype(np.int64)).max()) if bias.size else 0
    short = (bias_max + g.taps * 256 * 128 < 2**30
             and int(out.shift.values.max()) <= -1 and int(out.multiplier.values.min()) >= 0)
    packed = (can_pack and short and blocked > 0
              and g.taps * blocked * 2 <= EXTENDED_WEIGHTS_MAX_BYTES)
    return DepthwisePlan(blocked=blocked, row_lo=row_lo, row_hi=row_hi, col_lo=col_lo,
                         col_hi=col_hi, has_inside=has_inside, has_border=has_border,
                         short_requantize=short, packed=packed)


def _lowering(calls: DepthwiseCalls):
    def lower(op: DepthwiseConv2D, graph: Graph, target: Target,
              names: LayerNames) -> DepthwiseParams:
        weights = graph.tensor(op.filter).data  # [1, KH, KW, Cout]
        _, kh, kw, out_c = weights.shape
        x, y = feature_map(graph.tensor(op.input)), feature_map(graph.tensor(op.output))
        window = conv_window(op, (kh, kw))
        bias = model_bias(op, graph, out_c)
        out = requantization(op, graph, names, out_c)
        plan = depthwise_plan(x, y, window, op.depth_multiplier, bias, out,
                              can_pack=calls.mac4_packed is not None)
        # Padding taps read the zero point, which then adds nothing: the offset folds in.
        folded = folded_bias(bias, weights[0].reshape(-1, out_c).T,
                             graph.tensor(op.input).zero_point)
        return DepthwiseParams(
            input=x, output=y, window=window, depth_multiplier=op.depth_multiplier,
            input_offset=input_offset(op, graph),
            filter=ConstArray(names.table("filter"), "int8_t", weights.reshape(-1)),
            bias=bias_array(names, folded), out=out, plan=plan, calls=calls)
    return lower


DW_CONV_S8_DSP = Variant(
    "dw_conv_s8_dsp", (DepthwiseConv2D,), Isa.DSP, "dw_conv_s8", Order.RASTER,
    _lowering(DSP_CALLS), helpers=("window_helpers", "dw_conv_s8_dsp_helpers"),
    row_ranges=True)
DW_CONV_S8 = Variant(
    "dw_conv_s8", (DepthwiseConv2D,), Isa.PORTABLE, "dw_conv_s8", Order.RASTER,
    _lowering(PORTABLE_CALLS), helpers=("window_helpers", "dw_conv_s8_helpers"),
    row_ranges=True)

VARIANTS = (DW_CONV_S8_DSP, DW_CONV_S8)
