"""Depthwise convolutions (any kernel, stride, dilation, padding, depth multiplier).

Output pixels in raster order, each finished (all channels) before the next one's window is
read, so the planner may put the output over the input. Interior pixels (whole window inside
the image) take taps at constant offsets; border pixels go through tap pointers, where taps
outside the image read the input zero point, which contributes (zp + input_offset) * w = 0.
The bias has input_offset * (sum of a channel's taps) folded in at generation time, so every
tap contributes x * w alone. Channels go four at a time (four input channels with multiplier
1, or one input channel feeding four outputs with a multiplier of 4k), the rest one by one.

Variants (the window walk is shared, templates/kernels/dw_conv_s8.j2):
- DSP: a tap of four channels is one word, split by SXTB16 into int16 lanes, multiplied by
  SMLABB/SMLATT; the blocked channels' weights are sign-extended and doubled once per call
  (on the stack, or in arena scratch when large), so that a tap's weights are one LDRD and
  the accumulators come out doubled for the short requantization (kernels/requantize.py);
- portable: the same loops in C.
"""

from __future__ import annotations

from dataclasses import astuple, dataclass

import numpy as np

from ..ir import DepthwiseConv2D, Graph, Requant
from ..targets import Target
from .lowering import (FeatureMap, Requantization, Window, bias_array, conv_window, interior,
                       feature_map, folded_bias, input_offset, model_bias, requantization)
from .requantize import ShortRequantization, dsp_short_function, short_requantization
from .variant import ConstArray, Isa, LayerNames, Order, Variant

# The DSP variant's pre-extended weights go on the stack up to this size (2 KiB: a cost in RAM
# that every Cortex-M part can pay), in arena scratch above it.
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
class DepthwiseParams:
    """The portable variant's parameters."""

    input: FeatureMap
    output: FeatureMap
    window: Window
    depth_multiplier: int
    input_offset: int
    filter: ConstArray  # [KH * KW][Cout], the model's layout
    bias: ConstArray  # input offset folded in
    out: Requantization
    plan: DepthwisePlan
    block_pixels: int = 1


@dataclass(frozen=True)
class DepthwiseDspParams:
    """The DSP variant's parameters. With the short requantization, the blocked channels'
    weights are sign-extended and doubled once per call (on the stack, or in arena scratch
    when large), their accumulators come out doubled, and each channel's bias (doubled for the
    blocked channels), multiplier, K and e are four words of one table."""

    input: FeatureMap
    output: FeatureMap
    window: Window
    depth_multiplier: int
    input_offset: int
    filter: ConstArray  # [KH * KW][Cout], the model's layout
    channels: ConstArray  # [Cout][4] with the short sequence, else the bias
    short: ShortRequantization | None
    out: Requantization | None  # TFLite's sequence, without the short one
    requantize: str | None  # the C function of the short sequence
    plan: DepthwisePlan
    packed_on_stack: bool
    block_pixels: int = 1

    @property
    def packed_words(self) -> int:
        return self.window.taps * self.plan.blocked // 2


def accumulator_bound(window: Window, bias: np.ndarray) -> int:
    """|acc| <= this: the model's bias plus taps of |x - zp| <= 256 times |w| <= 128 (the same
    bounds the partial sums from the folded bias, of |x| <= 128 products, stay under)."""
    return int(np.abs(bias).max(initial=0)) + window.taps * 256 * 128


def portable_short(window: Window, bias: np.ndarray, requant: Requant) -> bool:
    """The portable short requantization (dw_requantize): |acc| < 2^30, right shifts,
    multipliers that are not negative."""
    return (accumulator_bound(window, bias) < 2**30 and max(requant.shift) <= -1
            and min(requant.multiplier) >= 0)


def depthwise_plan(x: FeatureMap, y: FeatureMap, window: Window, depth_multiplier: int,
                   short: bool, packed: bool) -> DepthwisePlan:
    g = window
    if depth_multiplier == 1:
        blocked = y.c - y.c % 4
    else:
        blocked = y.c if depth_multiplier % 4 == 0 else 0
    row_lo, row_hi, col_lo, col_hi = astuple(interior(x, y, g))
    # The interior gets its own unrolled code only where it is at least a quarter of the
    # pixels: in tiny maps (3x3 outputs of a 3x3 kernel) the border code does them all.
    inside = (row_hi - row_lo) * (col_hi - col_lo)
    has_inside = row_lo < row_hi and col_lo < col_hi and inside * 4 >= y.pixels
    has_border = not (row_lo == 0 and row_hi == y.h and col_lo == 0 and col_hi == y.w)
    return DepthwisePlan(blocked=blocked, row_lo=row_lo, row_hi=row_hi, col_lo=col_lo,
                         col_hi=col_hi, has_inside=has_inside, has_border=has_border,
                         short_requantize=short, packed=packed and short and blocked > 0)


def _geometry(op: DepthwiseConv2D, graph: Graph):
    weights = graph.tensor(op.filter).data  # [1, KH, KW, Cout]
    _, kh, kw, out_c = weights.shape
    return (weights, feature_map(graph.tensor(op.input)), feature_map(graph.tensor(op.output)),
            conv_window(op, (kh, kw)), model_bias(op, graph, out_c))


def _folded(op: DepthwiseConv2D, graph: Graph, weights: np.ndarray, bias: np.ndarray):
    """Padding taps read the zero point, which then adds nothing: the offset folds in."""
    out_c = weights.shape[3]
    return folded_bias(bias, weights[0].reshape(-1, out_c).T, graph.tensor(op.input).zero_point)


def _lower(op: DepthwiseConv2D, graph: Graph, target: Target,
           names: LayerNames) -> DepthwiseParams:
    weights, x, y, window, bias = _geometry(op, graph)
    plan = depthwise_plan(x, y, window, op.depth_multiplier,
                          short=portable_short(window, bias, op.requant), packed=False)
    return DepthwiseParams(
        input=x, output=y, window=window, depth_multiplier=op.depth_multiplier,
        input_offset=input_offset(op, graph),
        filter=ConstArray(names.table("filter"), "int8_t", weights.reshape(-1)),
        bias=bias_array(names, _folded(op, graph, weights, bias)),
        out=requantization(op, graph, names, y.c), plan=plan)


def _dsp_layout(op: DepthwiseConv2D, graph: Graph, names: LayerNames):
    weights, x, y, window, bias = _geometry(op, graph)
    out = requantization(op, graph, names, y.c)
    short = short_requantization(out, accumulator_bound(window, bias))
    plan = depthwise_plan(x, y, window, op.depth_multiplier, short=short is not None,
                          packed=True)
    return weights, x, y, window, bias, out, short, plan


def _lower_dsp(op: DepthwiseConv2D, graph: Graph, target: Target,
               names: LayerNames) -> DepthwiseDspParams:
    weights, x, y, window, bias, out, short, plan = _dsp_layout(op, graph, names)
    folded = _folded(op, graph, weights, bias).astype(np.int64)
    if short is None:
        channels = bias_array(names, folded)
    else:
        doubled = np.where(np.arange(y.c) < plan.blocked, 2 * folded, folded)
        words = np.stack([doubled, short.multiplier, short.rounding, short.exponent], axis=1)
        channels = ConstArray(names.table("channels"), "int32_t", words.reshape(-1)).as_int32()
    return DepthwiseDspParams(
        input=x, output=y, window=window, depth_multiplier=op.depth_multiplier,
        input_offset=input_offset(op, graph),
        filter=ConstArray(names.table("filter"), "int8_t", weights.reshape(-1)),
        channels=channels, short=short, out=out if short is None else None,
        requantize=dsp_short_function(short), plan=plan,
        packed_on_stack=_packed_bytes(window, plan) <= EXTENDED_WEIGHTS_MAX_BYTES)


def _packed_bytes(window: Window, plan: DepthwisePlan) -> int:
    return window.taps * plan.blocked * 2 if plan.packed else 0


def _dsp_scratch(op: DepthwiseConv2D, graph: Graph, target: Target) -> int:
    """The pre-extended weights when too large for the stack."""
    _, _, _, window, _, _, _, plan = _dsp_layout(op, graph, LayerNames("", 0, ""))
    size = _packed_bytes(window, plan)
    return size if size > EXTENDED_WEIGHTS_MAX_BYTES else 0


DW_CONV_S8_DSP = Variant(
    "dw_conv_s8_dsp", (DepthwiseConv2D,), Isa.DSP, "dw_conv_s8_dsp", Order.RASTER,
    _lower_dsp, scratch_bytes=_dsp_scratch,
    helpers=("window_helpers", "pw_conv_s8_dsp_helpers", "dw_conv_s8_dsp_helpers"),
    row_ranges=True)
DW_CONV_S8 = Variant(
    "dw_conv_s8", (DepthwiseConv2D,), Isa.PORTABLE, "dw_conv_s8", Order.RASTER, _lower,
    helpers=("window_helpers", "dw_conv_s8_helpers"), row_ranges=True)

VARIANTS = (DW_CONV_S8_DSP, DW_CONV_S8)
