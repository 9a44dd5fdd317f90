"""Helium (MVE) variant of the depthwise convolutions: any depth multiplier, stride, padding,
and dilation whose rows do not share a ring slot (gcd(dilation, kernel height) = 1).

A depthwise dot product runs over the taps of one channel, which NHWC spreads C bytes apart.
The kernel keeps the last KH input rows transposed in a ring in arena scratch: per input
channel a plane of columns, each column the KH rows' bytes side by side (ring slot s holds the
row y with (y + pad_top) % KH == s), so that the KH x KW window of a pixel is one run of
bytes, KW columns of KH (with dilation, wider and with gaps). One VMLADAVA.S8 then multiplies
a run of up to 16 bytes by a vector of the channel's weights (zero where the run has no tap):
one load and one instruction for up to 16 taps. Each input row is transposed once, when the
ring takes it (8 channels per widening load and scatter store); columns and rows outside the
image hold the input zero point (the input offset is folded into the bias, so they add
nothing). The weight vector of a channel is gathered for each output row from the channel's
KH x KW weights by the lane offsets of the ring's rotation (tables, one per rotation).

Per output row, channel by channel, four pixels at a time: four window loads and VMLADAVAs per
weight vector, the sums through the output stage with the channel's multiplier and shift, and
a scatter store (the four pixels are C bytes apart); on rows of eight pixels or more, eight
pixels a pass, their two blocks' sums narrowed to int16 together for the offset, clamp and
one store (MveDepthwiseParams.eight_pixels). A whole output row is computed together,
after the rows it reads are in the ring: raster order by rows.

On narrow rows (MveDepthwiseParams.channel_lanes) the lanes of the output stage are four
channels of one pixel instead: per output row, four channels' weight vectors are held while the
kernel walks the row's pixels, each pixel one window load and VMLADAVA per channel, the
channels' constants as vectors (kernels.mve.LaneTables) and one contiguous four-byte store.
A row of w pixels then costs w passes of four channels with no partial block of pixels, where
the pixel lanes cost per channel a set-up and ceil(w / 4) output stages, the last one partial.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from ..ir import DepthwiseConv2D, Graph, Op
from ..targets import Target
from .lowering import (FeatureMap, Window, ceil_to, clamp, conv_window, feature_map,
                       folded_bias, model_bias, weight_values)
from .mve import (INT32_LANES, VECTOR_BYTES, OutputStage, channel_shifts, multipliers_in_range,
                  output_lane_tables)
from .variant import ConstArray, Isa, LayerNames, Order, Variant

LOAD_OFFSET_MAX = 127  # VLDRB's immediate offset
PIXELS = 4  # output pixels per pass (int32 lanes of the output stage)
MAX_RUNS = 3  # weight vectors per channel (Q registers)
GROUP_OFFSETS_MAX = 6  # groups of eight channels with their own vector of plane offsets
SCATTER_LANES = 8  # channels per transposing store (16-bit offsets)
PAIRED_MIN_WIDTH = 16  # output pixels per row from which one load serves two (paired)
# Instructions per output row, the loops' counts on M55 (GCC 12 -O2, QEMU; channel_lanes_win).
# The choice they make agrees with LLVM's M55 cycles where both were measured (96 channels:
# rows of 3, 5, 6 pixels faster in channel lanes, 4, 7, 12 in pixel lanes; 8 a tie), though
# channel lanes take fewer instructions up to 12: their dependent chain per pixel is longer.
# Pixel lanes, per channel: its set-up, a block of four pixels, a partial block of 1-3 pixels;
PIXEL_LANES_CHANNEL = 10
PIXEL_LANES_BLOCK = 18
PIXEL_LANES_PARTIAL = (0, 13, 16, 19)
PIXEL_LANES_EIGHT = 34  # a pass of eight pixels (MveDepthwiseParams.eight_pixels)
# (The combined tail of 5-7 pixels saves about 3 on the block and partial block it replaces
# where the activation spans int8, as channel lanes need; left out of the count: so counted,
# rows of 5-7 pixels would take pixel lanes at 13-128 channels, measured slower there, e.g.
# 5x5x128 28,811 instructions against 25,646, 6x6x128 37,968 against 35,327.)
# channel lanes, per group of four channels (a partial last one alike): its set-up, a pixel.
# (The pixel's biases by one LDM and its sums by one STM: 23 -> 21.)
CHANNEL_LANES_GROUP = 27
CHANNEL_LANES_PIXEL = 21


@dataclass(frozen=True)
class Run:
    """The kernel columns [first, first + columns) of the window as one load: where it starts
    in a pixel's window (bytes) and which taps its lanes hold."""

    first: int
    columns: int
    offset: int


@dataclass(frozen=True)
class Ring:
    """The transposed input rows in the scratch: per input channel a plane of `columns`
    columns of `slots` bytes (column 0 is input column -pad_left)."""

    slots: int
    columns: int
    pad_left: int

    @property
    def plane(self) -> int:
        return self.slots * self.columns


@dataclass(frozen=True)
class MveDepthwiseParams:
    input: FeatureMap
    output: FeatureMap
    window: Window
    depth_multiplier: int
    zero_point: int  # the input's: what padding holds
    ring: Ring
    runs: tuple[Run, ...]
    pixel_step: int  # bytes between the windows of consecutive output pixels
    filter: ConstArray  # [Cout][KH * KW + 1]: ky-major taps and a zero
    rotations: ConstArray  # uint8 [KH][runs][16]: each lane's tap (KH * KW: the zero)
    channels: ConstArray  # per output channel: bias (input offset folded in), multiplier,
    #                       right shift (and left shift)
    channel_words: int  # int32s per channel in `channels`
    out: OutputStage
    block_pixels: int  # a whole output row is computed together
    # A uint8 model's weights minus their zero point, where a channel's need more than int8
    # (channel_offsets): `ones` [KH * KW + 1] (ones, then the zero) gives the vectors of each
    # window's input sum; the channel's offset (the `offset` word of `channels`, 0 for a
    # channel whose weights fit int8) times that sum joins its accumulators.
    ones: ConstArray | None = None
    offset_word: int | None = None  # the offset's index among the channel's words
    # Lanes are four channels of one pixel (see the module's docstring): `filter` then holds
    # a multiple of four channels (zero rows after the last), `channels` the LaneTables
    # layout ([group][table][4]) of the tables named here, in their order within a group.
    channel_lanes: bool = False
    lane_table_names: tuple[str, ...] = ()

    def lane_offset(self, name: str) -> int:
        """Where a table's vector starts in a group of four channels' `channels` (int32s)."""
        return INT32_LANES * self.lane_table_names.index(name)

    @property
    def lane_stride(self) -> int:
        """A group of four channels' int32s in `channels`."""
        return INT32_LANES * len(self.lane_table_names)

    @property
    def channel_groups(self) -> tuple[int, int]:
        """Full groups of four channels, and the channels of a partial last one (0: none)."""
        return self.output.c // INT32_LANES, self.output.c % INT32_LANES

    @property
    def taps(self) -> int:
        return self.window.taps

    @property
    def slot_rows_offset(self) -> int:
        """The scratch keeps the ring's rows between calls (a banded layer's steps are calls
        over consecutive rows, and its scratch lives from its first step to its last), with
        the input row each slot holds at this offset: a step takes only the rows the previous
        one did not."""
        return _slot_rows_offset(self.input, self.ring)

    @property
    def paired(self) -> bool:
        """One window load serves two pixels: where the window is one run and the next
        pixel's window (pixel_step bytes on) ends within the same 16 bytes (3x3 with stride 1
        or 2), the second pixel's VMLADAV takes a weight vector shifted by pixel_step lanes.
        Two loads fewer per four pixels, one gather more per channel and output row, and a Q
        register more held: on rows narrower than PAIRED_MIN_WIDTH that costs more than it
        saves (measured on VWW, M55). LLVM's M55 model times the pixel loop alike either way
        (24 cycles: the vector instructions' beats, not the loads, bound it)."""
        g = self.window
        span = ((g.k_w - 1) * g.dil_w + 1) * g.k_h
        return (len(self.runs) == 1 and self.pixel_step + span <= VECTOR_BYTES
                and self.output.w >= PAIRED_MIN_WIDTH)

    @property
    def vectors(self) -> int:
        """Weight vectors per channel (the rotations' entries): one per run, or two when
        paired (the run's, and the same shifted by a pixel)."""
        return 2 if self.paired else len(self.runs)

    @property
    def group_offsets(self) -> bool:
        """Each group of eight channels has its own vector of plane offsets when a pixel has
        two to six groups (Q registers: the ring functions hold them and one vector of
        channels) whose offsets all fit the scatter store's 16 bits: one pixel's stores then
        share the slot as their base (no add per group). v2's 48 channels: its stride-2 layer
        from 48x48 221,208 -> 191,154 instructions on M55 (est. cycles 263,637 -> 247,914)."""
        groups = -(-self.input.c // SCATTER_LANES)
        return 1 < groups <= GROUP_OFFSETS_MAX and (self.input.c - 1) * self.ring.plane < 2**16

    @property
    def ring_calls(self) -> bool:
        """With more than four groups' vectors of plane offsets, the functions that fill the
        ring are not inlined: GCC would hoist those vectors into the layer function and hold
        them across its channel loop, spilling its own (measured on v2's 48-channel layers:
        +1 % estimated cycles); a call per input row costs a few instructions."""
        return self.group_offsets and (-(-self.input.c // SCATTER_LANES) > 4
                                       or self.eight_pixels)

    @property
    def eight_pixels(self) -> bool:
        """Rows of eight pixels or more go eight pixels a pass: two blocks of four whose sums
        are narrowed to int16 together for the offset, clamp and one scatter store (16-bit
        offsets: seven pixels' bytes must fit), and half the pixel loop's branches. Only where
        one bound of the activation is int8's own (ReLU and ReLU6 at an output zero point of
        -128, or none): a saturating narrowing clamps that side, and the pass holds the weight
        vectors, the offsets and one vector of bounds; with two, GCC spills them (a ReLU6 of
        another zero point from 48x48x16, stride 2: 71,235 -> 77,695 instructions on M55)."""
        return self.output.w >= 2 * PIXELS and (2 * PIXELS - 1) * self.output.c < 2**16

    @property
    def combined_tail(self) -> bool:
        """The last 5 to 7 pixels of a row go in one pass: a block of four and the tail's,
        narrowed together as eight pixels are, one predicated store (one output stage's
        offset, clamp and store fewer than a block and a tail apart)."""
        return (self.output.w % (2 * PIXELS) > PIXELS
                and (2 * PIXELS - 1) * self.output.c < 2**16)

    @property
    def combined_tail_predicate(self) -> str:
        """The combined tail's store predicate (two bits per int16 lane): the block's four
        pixels in the even lanes, the tail's in the first odd ones."""
        tail = self.output.w % PIXELS
        bits = sum(3 << (4 * i) for i in range(PIXELS)) | sum(3 << (4 * i + 2)
                                                                for i in range(tail))
        return f"0x{bits:04x}"

    @property
    def advance(self) -> bool:
        """The first window load of a block of four pixels also moves the window to the next
        block (VLDRB's post-index reaches 127 bytes), saving the pixel loop an add."""
        return PIXELS * self.pixel_step <= LOAD_OFFSET_MAX


def _runs(g: Window) -> tuple[Run, ...] | None:
    """Kernel columns in runs of at most 16 lanes; None when the window needs more vectors
    than the variant holds."""
    per_run = max(n for n in range(1, g.k_w + 1) if ((n - 1) * g.dil_w + 1) * g.k_h <= 16) \
        if g.k_h <= VECTOR_BYTES else 0
    if per_run == 0:
        return None
    runs = tuple(Run(first, min(per_run, g.k_w - first), first * g.dil_w * g.k_h)
                 for first in range(0, g.k_w, per_run))
    return runs if len(runs) <= MAX_RUNS else None


def channel_lanes_win(op: Op, graph: Graph) -> bool:
    """Whether the op takes channel lanes: where they apply (one weight vector per channel,
    four of them held in Q registers; one input channel per output channel, so that four
    channels' windows are planes apart, each load at an immediate offset from the first; no
    uint8 offset weights; right shifts only, and an activation spanning all of int8, clamped
    by saturating narrowings, so that the multipliers and shifts stay in Q registers too) and
    an output row costs fewer instructions so: on narrow rows, where
    the pixel lanes' per-channel set-up and partial blocks of pixels cost more than the channel
    lanes' vector constants and partial group of channels (counts measured on M55)."""
    g = conv_window(op, graph)
    runs = _runs(g)
    x, y = feature_map(graph.tensor(op.input)), feature_map(graph.tensor(op.output))
    if runs is None or len(runs) != 1 or op.depth_multiplier != 1:
        return False
    if channel_offsets(graph.tensor(op.filter))[1].any():
        return False
    bounds = clamp(op, graph)
    if (bounds.act_min, bounds.act_max) != (-128, 127) or not channel_shifts(
            op, graph, y.c).stage.right_only:
        return False  # vectors of bounds or left shifts: Q registers the kernel has not
    ring = _ring(x, y, g)
    if (INT32_LANES - 1) * ring.plane > LOAD_OFFSET_MAX:
        return False
    pixel_lanes = y.c * (PIXEL_LANES_CHANNEL + PIXEL_LANES_EIGHT * (y.w // (2 * PIXELS))
                         + PIXEL_LANES_BLOCK * (y.w % (2 * PIXELS) // PIXELS)
                         + PIXEL_LANES_PARTIAL[y.w % PIXELS])
    channel_lanes = -(-y.c // INT32_LANES) * (CHANNEL_LANES_GROUP + CHANNEL_LANES_PIXEL * y.w)
    return channel_lanes < pixel_lanes


def _ring(x: FeatureMap, y: FeatureMap, g: Window) -> Ring:
    last = (y.w - 1) * g.stride_w - g.pad_left + (g.k_w - 1) * g.dil_w
    return Ring(slots=g.k_h, columns=max(last, x.w - 1) + g.pad_left + 1, pad_left=g.pad_left)


def _rotation_lanes(g: Window, runs: tuple[Run, ...], pixel_shift: int = 0) -> np.ndarray:
    """[rotation][run][lane] -> the tap (ky * KW + kx) the lane multiplies, KH * KW for none.
    Rotation r: the window's first row is in slot r; row ky is in slot (r + ky * dil) % KH.
    With pixel_shift (MveDepthwiseParams.paired), one more entry per rotation: the run's
    lanes moved up by that many, for the next pixel's window in the same load."""
    lanes = np.full((g.k_h, len(runs) + bool(pixel_shift), VECTOR_BYTES), g.taps, np.uint8)
    for r in range(g.k_h):
        for j, run in enumerate(runs):
            for kx in range(run.first, run.first + run.columns):
                for ky in range(g.k_h):
                    slot = (r + ky * g.dil_h) % g.k_h
                    lanes[r, j, (kx - run.first) * g.dil_w * g.k_h + slot] = ky * g.k_w + kx
    if pixel_shift:
        lanes[:, -1, pixel_shift:] = lanes[:, 0, :VECTOR_BYTES - pixel_shift]
    return lanes


def _applies(op: Op, graph: Graph, target: Target) -> bool:
    if not multipliers_in_range(op):
        return False
    _, kh, kw, _ = graph.tensor(op.filter).shape
    g = conv_window(op, graph)
    runs = _runs(g)
    if runs is None or math.gcd(g.dil_h, g.k_h) != 1:
        return False
    step = g.stride_w * g.k_h
    if (PIXELS - 1) * step + max(run.offset for run in runs) > LOAD_OFFSET_MAX:
        return False
    ring = _ring(feature_map(graph.tensor(op.input)), feature_map(graph.tensor(op.output)), g)
    return (SCATTER_LANES - 1) * ring.plane < 2**16  # the transposing store's offsets


def channel_offsets(tensor) -> tuple[np.ndarray, np.ndarray]:
    """Per output channel, int8 weights [Cout][KH * KW] and an offset with stored + offset =
    w - zero point: the weights themselves (offset 0) where they fit int8, else a uint8
    model's weights as held (w - 128, which fit) and the offset -zero point. TF1's min/max
    quantization puts its extremes in a few channels only, so most channels take no offset."""
    centred = weight_values(tensor)[0]  # [KH, KW, Cout]
    taps = centred.reshape(-1, centred.shape[-1]).T
    wide = (taps.min(axis=1) < -128) | (taps.max(axis=1) > 127)
    offsets = np.where(wide, -(tensor.zero_point if wide.any() else 0), 0).astype(np.int64)
    stored = taps - offsets[:, None]
    return stored.astype(np.int8), offsets


def _lower(op: DepthwiseConv2D, graph: Graph, target: Target,
           names: LayerNames) -> MveDepthwiseParams:
    filter_tensor = graph.tensor(op.filter)
    _, kh, kw, out_c = filter_tensor.shape
    x, y = feature_map(graph.tensor(op.input)), feature_map(graph.tensor(op.output))
    g = conv_window(op, graph)
    runs = _runs(g)
    taps, offsets = channel_offsets(filter_tensor)  # [Cout][KH * KW], [Cout]
    bias = folded_bias(model_bias(op, graph, out_c), taps, graph.tensor(op.input).zero_point)
    bias = bias - graph.tensor(op.input).zero_point * offsets * g.taps
    shifts = channel_shifts(op, graph, out_c)
    tables = {"bias": bias, "multiplier": shifts.multiplier, "right": shifts.right}
    if shifts.stage.left:
        tables["left"] = shifts.left
    wide = bool(offsets.any())
    if wide:
        tables["offset"] = offsets
    channels = np.stack([t.astype(np.int32) for t in tables.values()], axis=1)
    params = MveDepthwiseParams(
        input=x, output=y, window=g, depth_multiplier=op.depth_multiplier,
        zero_point=graph.tensor(op.input).zero_point, ring=_ring(x, y, g), runs=runs,
        pixel_step=g.stride_w * g.k_h,
        filter=ConstArray(names.table("filter"), "int8_t",
                          np.pad(taps, ((0, 0), (0, 1))).reshape(-1)),
        rotations=ConstArray(names.table("rotations"), "uint8_t", np.zeros(0, np.uint8)),
        channels=ConstArray(names.table("channels"), "int32_t", channels.reshape(-1)),
        channel_words=len(tables), out=shifts.stage, block_pixels=y.w,
        ones=ConstArray(names.table("ones"), "int8_t",
                        np.array([1] * g.taps + [0], np.int8)) if wide else None,
        offset_word=list(tables).index("offset") if wide else None)
    lanes = _rotation_lanes(g, runs, params.pixel_step if params.paired else 0)
    params = replace(params, rotations=ConstArray(names.table("rotations"), "uint8_t",
                                                  lanes.reshape(-1)))
    if channel_lanes_win(op, graph):
        params = _with_channel_lanes(params, op, graph, names, taps, bias)
    return params


def _with_channel_lanes(params: MveDepthwiseParams, op: DepthwiseConv2D, graph: Graph,
                        names: LayerNames, taps: np.ndarray,
                        bias: np.ndarray) -> MveDepthwiseParams:
    """The record with its filter and constants laid out for channel lanes: both padded to a
    multiple of four channels (the padding's weights 0, multiplier 0), so that a partial last
    group gathers its weight vectors and loads its constants as a full one does."""
    out_c = taps.shape[0]
    padded = ceil_to(out_c, INT32_LANES)
    shifts = channel_shifts(op, graph, out_c, padded)
    padded_bias = np.zeros(padded, np.int64)
    padded_bias[:out_c] = bias
    tables = output_lane_tables(names, padded_bias, shifts)
    if tables.offset("bias") != 0:  # the dot function loads the biases by LDM from t
        raise ValueError(f"channel lanes need the biases first in a group: {tables.names}")
    filter_rows = np.zeros((padded, taps.shape[1] + 1), np.int8)
    filter_rows[:out_c, :-1] = taps
    return replace(params, channel_lanes=True, lane_table_names=tables.names,
                   channels=tables.array, channel_words=0,
                   filter=ConstArray(params.filter.name, "int8_t", filter_rows.reshape(-1)))


def _slot_rows_offset(x: FeatureMap, ring: Ring) -> int:
    """Where the scratch holds the row each ring slot holds (int32s): right after the planes,
    in the 16 bytes a window's last load may read past them (lanes whose weights are zero:
    what they hold does not matter), so that a 3x3 ring needs no byte more."""
    return ceil_to(x.c * ring.plane, 4)


def _scratch_bytes(op: Op, graph: Graph, target: Target) -> int:
    _, kh, kw, _ = graph.tensor(op.filter).shape
    x, y = feature_map(graph.tensor(op.input)), feature_map(graph.tensor(op.output))
    ring = _ring(x, y, conv_window(op, graph))
    return max(x.c * ring.plane + VECTOR_BYTES, _slot_rows_offset(x, ring) + 4 * ring.slots)


DW_CONV_S8_MVE = Variant(
    "dw_conv_s8_mve", (DepthwiseConv2D,), Isa.MVE, "dw_conv_s8_mve", Order.RASTER, _lower,
    applies=_applies, scratch_bytes=_scratch_bytes, helpers=("mve_helpers", "dw_conv_s8_mve_helpers"), row_ranges=True,
    legacy=True, keeps_input_rows=True)

VARIANTS = (DW_CONV_S8_MVE,)
