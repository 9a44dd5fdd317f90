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
                       feature_map, folded_bias, input_offset, model_bias, requantization,
                       weight_values)
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
class SharedBorder:
    """The DSP variant's border pixel function, when it depends on nothing but these: one C
    function (templates/kernels/dw_border_s8_dsp.c.j2) then serves every layer with the same
    number of taps and requantization, whatever its size, channel count or clamp (arguments:
    border pixels are few, so the call, the loop bound and the clamp's tests cost little),
    where each layer would otherwise inline a copy of the unrolled taps. A band schedule that
    keeps several depthwise layers on this variant (their ring of rows does not fit) thus
    pays for one."""

    taps: int
    requantize: str  # the C function of the short sequence

    @property
    def name(self) -> str:
        return f"dw_border_s8_dsp_{self.taps}taps_{self.requantize}"


@dataclass(frozen=True)
class SharedInside:
    """The DSP variant's interior pixel function, when it depends on nothing but these (the
    taps' constant offsets, the channel count, the requantization and the clamp, all constants
    in its C): layers that differ only in their output size or stride (a stride-1 layer and
    the stride-2 one after it read the same input shape) may call one out-of-line function
    (templates/kernels/dw_inside_s8_dsp.c.j2) instead of each inlining a copy; codegen
    decides, where at least two layers' functions would call it."""

    k_h: int
    k_w: int
    dil_h: int
    dil_w: int
    row_pixels: int  # the input's width
    channels: int
    requantize: str  # the C function of the short sequence
    act_min: int
    act_max: int

    @property
    def offsets(self) -> tuple[int, ...]:
        """Where each tap starts, from the window's first pixel (dw_conv_s8.j2's tap())."""
        return tuple((ky * self.dil_h * self.row_pixels + kx * self.dil_w) * self.channels
                     for ky in range(self.k_h) for kx in range(self.k_w))

    @property
    def name(self) -> str:
        clamp = f"{self.act_min}_{self.act_max}".replace("-", "m")
        return (f"dw_inside_s8_dsp_{self.k_h}x{self.k_w}_d{self.dil_h}x{self.dil_w}"
                f"_w{self.row_pixels}_c{self.channels}_{self.requantize}_{clamp}")


@dataclass(frozen=True)
class DepthwiseParams:
    """The portable variant's parameters."""

    input: FeatureMap
    output: FeatureMap
    window: Window
    depth_multiplier: int
    input_offset: int
    filter: ConstArray  # [KH * KW][Cout], the model's layout (int16 where wide)
    bias: ConstArray  # input offset folded in
    out: Requantization
    plan: DepthwisePlan
    block_pixels: int = 1
    # The multiply-accumulates of four channels, for int8 weights or for a uint8 model's
    # weights minus their zero point, which need int16 (weight_values).
    mac4: str = "dw_mac4"
    mac4_one: str = "dw_mac4_one"


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
    filter: ConstArray | None  # [KH * KW][Cout], the model's layout (None: all prepacked)
    channels: ConstArray  # [Cout][4] with the short sequence, else the bias
    short: ShortRequantization | None
    out: Requantization | None  # TFLite's sequence, without the short one
    requantize: str | None  # the C function of the short sequence
    plan: DepthwisePlan
    packed_on_stack: bool
    block_pixels: int = 1
    # A uint8 model's weights minus their zero point (int16): the blocked channels' weights
    # extended and doubled at generation time, in flash, in dw_extend_weights' order.
    prepacked: ConstArray | None = None
    shared_border: SharedBorder | None = None  # the border pixels' shared function, if any
    shared_inside: SharedInside | None = None  # the interior pixels' shared function, if any

    @property
    def packed_words(self) -> int:
        return self.window.taps * self.plan.blocked // 2


def accumulator_bound(window: Window, bias: np.ndarray, weight_max: int = 128) -> int:
    """|acc| <= this: the model's bias plus taps of |x - zp| <= 256 times |w| <= weight_max
    (128 for int8, up to 255 for a uint8 model's; the same bounds the partial sums from the
    folded bias, of |x| <= 128 products, stay under)."""
    return int(np.abs(bias).max(initial=0)) + window.taps * 256 * weight_max


def portable_short(window: Window, bias: np.ndarray, requant: Requant,
                   weight_max: int = 128) -> bool:
    """The portable short requantization (dw_requantize): |acc| < 2^30, right shifts,
    multipliers that are not negative."""
    return (accumulator_bound(window, bias, weight_max) < 2**30 and max(requant.shift) <= -1
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
    weights = weight_values(graph.tensor(op.filter))  # [1, KH, KW, Cout], w - zero point
    _, kh, kw, out_c = weights.shape
    return (weights, feature_map(graph.tensor(op.input)), feature_map(graph.tensor(op.output)),
            conv_window(op, graph), model_bias(op, graph, out_c))


def _folded(op: DepthwiseConv2D, graph: Graph, weights: np.ndarray, bias: np.ndarray):
    """Padding taps read the zero point, which then adds nothing: the offset folds in."""
    out_c = weights.shape[3]
    return folded_bias(bias, weights[0].reshape(-1, out_c).T, graph.tensor(op.input).zero_point)


def is_wide(weights: np.ndarray) -> bool:
    """Weights that int8 cannot hold (a uint8 model's, minus their zero point)."""
    return bool(weights.min(initial=0) < -128 or weights.max(initial=0) > 127)


def filter_table(names: LayerNames, weights: np.ndarray) -> ConstArray:
    """The filter [KH * KW][Cout] as int8, or int16 where it is wide."""
    if is_wide(weights):
        return ConstArray(names.table("filter"), "int16_t", weights.reshape(-1).astype(np.int16))
    return ConstArray(names.table("filter"), "int8_t", weights.reshape(-1).astype(np.int8))


def _weight_max(weights: np.ndarray) -> int:
    return max(128, int(np.abs(weights).max(initial=0)))


def _lower(op: DepthwiseConv2D, graph: Graph, target: Target,
           names: LayerNames) -> DepthwiseParams:
    weights, x, y, window, bias = _geometry(op, graph)
    plan = depthwise_plan(x, y, window, op.depth_multiplier,
                          short=portable_short(window, bias, op.requant, _weight_max(weights)),
                          packed=False)
    wide = is_wide(weights)
    return DepthwiseParams(
        input=x, output=y, window=window, depth_multiplier=op.depth_multiplier,
        input_offset=input_offset(op, graph), filter=filter_table(names, weights),
        bias=bias_array(names, _folded(op, graph, weights, bias)),
        out=requantization(op, graph, names, y.c), plan=plan,
        mac4="dw_mac4_wide" if wide else "dw_mac4",
        mac4_one="dw_mac4_one_wide" if wide else "dw_mac4_one")


def _dsp_layout(op: DepthwiseConv2D, graph: Graph, names: LayerNames):
    weights, x, y, window, bias = _geometry(op, graph)
    out = requantization(op, graph, names, y.c)
    short = short_requantization(out, accumulator_bound(window, bias, _weight_max(weights)))
    plan = depthwise_plan(x, y, window, op.depth_multiplier, short=short is not None,
                          packed=True)
    return weights, x, y, window, bias, out, short, plan


def _lower_dsp(op: DepthwiseConv2D, graph: Graph, target: Target,
               names: LayerNames) -> DepthwiseDspParams:
    weights, x, y, window, bias, out, short, plan = _dsp_layout(op, graph, names)
    folded = _folded(op, graph, weights, bias).astype(np.int64)
    # Prepacked weights serve the blocked channels; the filter table only the rest (none
    # when every channel is blocked: an unused table would still be linked as an argument).
    tail = not (is_wide(weights) and plan.packed and plan.blocked == y.c)
    filter_ = filter_table(names, weights) if tail else None
    if short is None:
        channels = bias_array(names, folded)
    else:
        doubled = np.where(np.arange(y.c) < plan.blocked, 2 * folded, folded)
        words = np.stack([doubled, short.multiplier, short.rounding, short.exponent], axis=1)
        channels = ConstArray(names.table("channels"), "int32_t", words.reshape(-1)).as_int32()
    return DepthwiseDspParams(
        input=x, output=y, window=window, depth_multiplier=op.depth_multiplier,
        input_offset=input_offset(op, graph), filter=filter_,
        channels=channels, short=short, out=out if short is None else None,
        requantize=dsp_short_function(short), plan=plan,
        packed_on_stack=_packed_bytes(window, plan) <= EXTENDED_WEIGHTS_MAX_BYTES,
        prepacked=_prepacked(names, weights, window, plan) if is_wide(weights) else None,
        shared_border=_shared_border(op, y, window, short, plan),
        shared_inside=_shared_inside(op, x, y, window, short, plan))


def _shared_border(op: DepthwiseConv2D, y: FeatureMap, window: Window,
                   short: ShortRequantization | None, plan: DepthwisePlan
                   ) -> SharedBorder | None:
    """The border function layers may share: with the short requantization on packed
    weights, multiplier 1 and every channel in blocks of four (no per-layer tail loop)."""
    if short is None or not plan.packed or not plan.has_border or \
            op.depth_multiplier != 1 or plan.blocked != y.c:
        return None
    return SharedBorder(window.taps, dsp_short_function(short))


def _shared_inside(op: DepthwiseConv2D, x: FeatureMap, y: FeatureMap, window: Window,
                   short: ShortRequantization | None, plan: DepthwisePlan
                   ) -> SharedInside | None:
    """The interior function layers may share, on the same conditions as the border's."""
    if short is None or not plan.packed or not plan.has_inside or \
            op.depth_multiplier != 1 or plan.blocked != y.c:
        return None
    return SharedInside(window.k_h, window.k_w, window.dil_h, window.dil_w, x.w, y.c,
                        dsp_short_function(short), short.act_min, short.act_max)


def _prepacked(names: LayerNames, weights: np.ndarray, window: Window,
               plan: DepthwisePlan) -> ConstArray:
    """What dw_extend_weights makes of int8 weights, for weights int8 cannot hold: per block
    of four channels and per tap, the words (2 w0, 2 w2) and (2 w1, 2 w3), low lane first
    (the order SXTB16 splits a word in)."""
    taps = weights.reshape(window.taps, -1)[:, :plan.blocked].astype(np.int64)
    words = []
    for c in range(0, plan.blocked, 4):
        for t in range(window.taps):
            w = 2 * taps[t, c:c + 4]  # |2 w| <= 510: an int16 lane
            words.append((w[0] & 0xFFFF) | ((w[2] & 0xFFFF) << 16))
            words.append((w[1] & 0xFFFF) | ((w[3] & 0xFFFF) << 16))
    values = np.array(words, np.int64).astype(np.uint32).view(np.int32)
    return ConstArray(names.table("packed"), "int32_t", values)


def _packed_bytes(window: Window, plan: DepthwisePlan) -> int:
    return window.taps * plan.blocked * 2 if plan.packed else 0


def _dsp_scratch(op: DepthwiseConv2D, graph: Graph, target: Target) -> int:
    """The pre-extended weights when too large for the stack (none when prepacked)."""
    weights, _, _, window, _, _, _, plan = _dsp_layout(op, graph, LayerNames("", 0, ""))
    size = 0 if is_wide(weights) else _packed_bytes(window, plan)
    return size if size > EXTENDED_WEIGHTS_MAX_BYTES else 0


def _dsp_applies(op: DepthwiseConv2D, graph: Graph, target: Target) -> bool:
    """Weights int8 cannot hold go through the prepacked int16 weights, which need the
    packed plan (the short requantization, blocked channels); otherwise portable C."""
    weights, _, _, _, _, _, _, plan = _dsp_layout(op, graph, LayerNames("", 0, ""))
    return not is_wide(weights) or plan.packed


def _slower_than_pairs(op: DepthwiseConv2D, graph: Graph) -> float:
    """Its instructions per MAC beyond dw_conv_s8_pairs_dsp's (VWW on Cortex-M7: 1.34-1.92
    at stride 1, 0.73-0.87 at stride 2, where the ring variant widens each row for fewer
    outputs)."""
    return 1.7 if op.stride == (1, 1) else 0.8


DW_CONV_S8_DSP = Variant(
    "dw_conv_s8_dsp", (DepthwiseConv2D,), Isa.DSP, "dw_conv_s8_dsp", Order.RASTER,
    _lower_dsp, applies=_dsp_applies, scratch_bytes=_dsp_scratch,
    helpers=("window_helpers", "pw_conv_s8_dsp_helpers", "dw_conv_s8_dsp_helpers"),
    row_ranges=True, legacy=True, slower_per_mac=_slower_than_pairs)
DW_CONV_S8 = Variant(
    "dw_conv_s8", (DepthwiseConv2D,), Isa.PORTABLE, "dw_conv_s8", Order.RASTER, _lower,
    helpers=("window_helpers", "dw_conv_s8_helpers"), row_ranges=True, legacy=True,
    columns=True)

VARIANTS = (DW_CONV_S8_DSP, DW_CONV_S8)
