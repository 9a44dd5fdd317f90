"""Depthwise convolutions on Arm's DSP extension with SMLAD on pairs of taps of one channel.

SMLAD multiplies two int16 lanes by two int16 lanes and adds both products: two MACs per
instruction, but only where its two lanes hold two taps of the *same* channel, which NHWC puts
C bytes apart. The kernel therefore keeps the last KH input rows widened to int16 and
transposed, in a ring in arena scratch: per ring slot (an input row), per input channel a plane
of ``columns`` int16 columns, column 0 being input column -pad_left. Each input row is widened
once, when the ring takes it (SXTB16 and PKHBT/PKHTB: eight values per two loads and four
stores); columns and rows outside the image hold the input zero point, whose products the bias
already cancels (the input offset is folded into it), so borders need no code of their own.

Per output row, channel by channel, two output columns at a time: a word of a plane row holds
two adjacent columns, so each kernel row takes ceil((stride + KW) / 2) words (one LDRD and,
for stride 2, one LDR) and the pair's MACs follow a plan made here (``mac_plan``): SMLAD where
a word meets two taps of one output, SMLAxy where it meets one (3x3, stride 1: four
instructions per kernel row for 6 MACs). The channel's constants (its doubled bias, the short
requantization's multiplier, K and e, and its weights as pairs of doubled int16 in the order
the plan reads them, laid out here at generation time) are one record per channel, read once
per output row and kept in registers across the row's pixels. The doubled weights make the
accumulators come out doubled, as the short requantization (kernels/requantize.py) takes them;
|2 (w - z)| <= 510 also holds a uint8 model's weights, so legacy models take this variant too.

A row's outputs are written after the ring holds every input row they read, and the ring takes
a row only when the first output row that reads it starts: every read of the input comes
before the writes of the output pixels whose windows come earlier, so the memory planner may
put the output over the input as for a kernel that writes pixel by pixel (block of 1).

Where the ring does not fit the arena's budget, a second variant (``..._blocks``) keeps only
four channels' planes of KH rows (a few hundred bytes; a third, two) and widens them again for
every output row: per output row and block of channels, the KH input rows the row reads, then
the block's channels over the row as above (plane row s holds kernel row s). Stride 1 widens
each input value KH times instead of once, about 1.25 instructions a value, still far below
what the lean kernel (dw_conv_s8_dsp) spends on its MACs. A row's writes of one block come
before its reads of the next block, so the planner takes the whole output row as the block.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from ..ir import DepthwiseConv2D, Graph, Op
from ..targets import Target
from .depthwise import accumulator_bound
from .lowering import (FeatureMap, Window, conv_window, feature_map, folded_bias, model_bias,
                       requantization, weight_values)
from .requantize import ShortRequantization, dsp_short_function, short_requantization
from .variant import ConstArray, Isa, LayerNames, Order, Variant, per_mac

LANES = 2  # int16 columns per word
CHANNEL_HEADER = 4  # the record's words before the weights: 2 bias, multiplier, K, e
# The short requantization's clamped form in one multiply (templates/kernels/
# dw_conv_s8_pairs_dsp_helpers.c.j2); the other form is the pointwise kernels'.
DW_SHORT_CLAMPED = "dw_requantize_doubled_clamped"
MAX_KERNEL_WIDTH = 7  # wider kernels' weight words would not stay near registers anyway
STRD_OFFSET_MAX = 1020  # bytes: LDRD's and STRD's immediate offset
# The blocks variants' planes, by scratch tier (Variant.small_scratch): four (one dw_widen4
# per column pair), then two (dw_widen1 per channel and pair: slower, half the scratch).
CHANNEL_BLOCKS = {1: 4, 2: 2}
# Their instructions per MAC beyond the ring variant's (Variant.slower_per_mac), VWW on
# Cortex-M7: tier 1 on its 12x12x64 layer whole (0.37), tier 2 on its 24x24x32 layer in
# bands of a row (0.69).
SLOWER_PER_MAC = {1: 0.4, 2: 0.7}


@dataclass(frozen=True)
class Mac:
    """One multiply-accumulate instruction of a block of output columns: ``function``
    (an ACLE intrinsic) of data word ``word`` of kernel row ``row`` and that row's weight word
    ``weight``, into output ``output``'s accumulator (starting from the bias where
    ``first``)."""

    function: str
    output: int
    row: int
    word: int
    weight: int
    first: bool


@dataclass(frozen=True)
class RowPlan:
    """The MACs of a block of ``outputs`` adjacent output columns (1 or 2) over the whole
    window, the data words each kernel row loads, and per weight word its two taps
    (kx, or -1 for a zero lane), for one kernel row (every row has the same plan)."""

    outputs: int
    words: int  # data words loaded per kernel row
    weight_taps: tuple[tuple[int, int], ...]  # per weight word of a kernel row: (low, high)
    macs: tuple[Mac, ...]


@dataclass(frozen=True)
class Ring:
    """The widened input rows in the scratch: per input channel a plane of ``slots`` rows
    (input row y in slot (y + pad_top) % slots) of ``columns`` int16 (column 0 is input column
    -pad_left), so that a pixel's kernel rows are at constant offsets from each other."""

    slots: int
    planes: int
    columns: int
    pad_left: int

    @property
    def row_words(self) -> int:
        return self.columns // LANES

    @property
    def plane_words(self) -> int:
        return self.slots * self.row_words

    @property
    def bytes(self) -> int:
        return self.planes * self.plane_words * 4


@dataclass(frozen=True)
class Widening:
    """How the ring takes an input row: pairs of ring columns (2p, 2p + 1) for p in
    [0, pairs), each lane from input column 2p + lane - pad_left or the zero point. Pairs
    [inside_begin, inside_end) read two image columns; the others (``edges``: the pair and the
    input column of each lane, None for the zero point) are written one by one."""

    pairs: int
    inside_begin: int
    inside_end: int
    edges: tuple[tuple[int, int | None, int | None], ...]

    @property
    def reads_zero_point(self) -> bool:
        """Whether a lane takes the zero point (a column outside the image): a tile's cropped
        input may have none, and the C then declares no zero points."""
        return any(a is None or b is None for _, a, b in self.edges)


@dataclass(frozen=True)
class DepthwisePairsParams:
    input: FeatureMap
    output: FeatureMap
    window: Window
    depth_multiplier: int
    zero_point: int  # the input's: what padding holds
    ring: Ring
    widening: Widening
    pair: RowPlan  # two output columns
    single: RowPlan  # the last column of an odd width
    pairs: int  # output column pairs per row
    column_step: int  # words between the data of consecutive pairs (the stride)
    channels: ConstArray  # per output channel: 2 bias, multiplier, K, e, then weight words
    channel_words: int
    short: ShortRequantization
    requantize: str  # the C function of the short sequence
    block_pixels: int = 1
    # 0: the ring holds every channel's plane; otherwise the blocks variant's planes per block
    channel_block: int = 0

    @property
    def take_channels(self) -> int:
        """The input channels one widening of a row takes."""
        return self.channel_block or self.input.c

    @property
    def paired_stores(self) -> bool:
        """The widening's STRD reaches the fourth plane by its immediate offset."""
        return 3 * self.ring.plane_words * 4 <= STRD_OFFSET_MAX

    @property
    def row_weights(self) -> int:
        """Weight words per kernel row."""
        return len(self.pair.weight_taps)


def _lane_taps(output: int, word: int, stride: int, k_w: int) -> tuple[int, int]:
    """The taps (kx, -1 where none) that output column `output` of a block reads from the two
    lanes of data word `word` of a kernel row."""
    taps = []
    for lane in range(LANES):
        kx = LANES * word + lane - output * stride
        taps.append(kx if 0 <= kx < k_w else -1)
    return taps[0], taps[1]


def _weight_words(needs: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Weight words (low tap, high tap) covering every (low, high) need: a pair as itself or
    swapped (SMLADX), a single tap in either lane of any word."""
    words: list[tuple[int, int]] = []
    for low, high in needs:
        if low >= 0 and high >= 0 and (low, high) not in words and (high, low) not in words:
            words.append((low, high))
    singles = [t for low, high in needs for t in (low, high)
               if (low < 0) != (high < 0) and t >= 0]
    for tap in dict.fromkeys(singles):
        if any(tap in word for word in words):
            continue
        half = next((i for i, w in enumerate(words) if -1 in w), None)
        if half is None:
            words.append((tap, -1))
        else:
            words[half] = (words[half][0], tap)
    return words


def mac_plan(outputs: int, stride: int, k_h: int, k_w: int,
             weight_taps: tuple[tuple[int, int], ...] | None = None) -> RowPlan:
    """The MACs of `outputs` adjacent output columns of one channel (module docstring), with
    weight words of its own or the given ones (which must cover its needs)."""
    words = -(-((outputs - 1) * stride + k_w) // LANES)
    needs = [(_lane_taps(q, j, stride, k_w), q, j) for q in range(outputs)
             for j in range(words)]
    needs = [n for n in needs if n[0] != (-1, -1)]
    if weight_taps is None:
        weight_taps = tuple(_weight_words([taps for taps, _, _ in needs]))
    macs, started = [], set()
    for row in range(k_h):
        for (low, high), q, j in needs:
            function, weight = _instruction((low, high), weight_taps)
            macs.append(Mac(function, q, row, j, weight, first=q not in started))
            started.add(q)
    return RowPlan(outputs=outputs, words=words, weight_taps=weight_taps, macs=tuple(macs))


def _instruction(taps: tuple[int, int],
                 weight_taps: tuple[tuple[int, int], ...]) -> tuple[str, int]:
    """The intrinsic and weight word multiplying a data word's lanes by these taps."""
    low, high = taps
    for index, word in enumerate(weight_taps):
        if low >= 0 and high >= 0:
            if word == (low, high):
                return "__smlad", index
            if word == (high, low):
                return "__smladx", index
        elif low >= 0 and low in word:
            return ("__smlabb" if word[0] == low else "__smlabt"), index
        elif high >= 0 and high in word:
            return ("__smlatb" if word[0] == high else "__smlatt"), index
    raise AssertionError(f"no weight word for taps {taps}")


def weight_words(weights: np.ndarray, plan: RowPlan) -> np.ndarray:
    """[Cout][KH * words] int32 words of doubled int16 weights (low lane first), from the
    weights [KH, KW, Cout] (w - zero point) in the plan's order."""
    k_h, _, out_c = weights.shape
    doubled = 2 * weights.astype(np.int64)  # |2 (w - z)| <= 510: an int16 lane
    lanes = np.zeros((out_c, k_h, len(plan.weight_taps), LANES), np.int64)
    for index, taps in enumerate(plan.weight_taps):
        for lane, kx in enumerate(taps):
            if kx >= 0:
                lanes[:, :, index, lane] = doubled[:, kx, :].T
    words = (lanes[..., 0] & 0xFFFF) | ((lanes[..., 1] & 0xFFFF) << 16)
    return words.reshape(out_c, -1).astype(np.uint32).view(np.int32)


def record_lanes(params: DepthwisePairsParams) -> np.ndarray:
    """The weight lanes of every channel's record as int16 [Cout][KH][words][2] (doubled
    weights, 0 where a lane has no tap): weight_words read back."""
    records = params.channels.values.reshape(-1, params.channel_words)[:, CHANNEL_HEADER:]
    lanes = records.astype(np.int32).view(np.int16)  # little endian: the low lane first
    return lanes.reshape(records.shape[0], params.window.k_h, params.row_weights, LANES)


def _geometry(op: DepthwiseConv2D, graph: Graph):
    _, k_h, k_w, _ = graph.tensor(op.filter).shape
    return (feature_map(graph.tensor(op.input)), feature_map(graph.tensor(op.output)),
            conv_window(op, graph))


def _ring(x: FeatureMap, y: FeatureMap, g: Window, pair: RowPlan, single: RowPlan) -> Ring:
    """Every column a block reads (the last pair's, or the odd column's), and the image."""
    pairs = y.w // 2
    reads = [2 * (pairs - 1) * g.stride_w + LANES * pair.words] if pairs else []
    if y.w % 2:
        reads.append(2 * pairs * g.stride_w + LANES * single.words)
    columns = max(reads + [g.pad_left + x.w])
    return Ring(slots=g.k_h, planes=x.c, columns=columns + columns % 2, pad_left=g.pad_left)


def _widening(x: FeatureMap, ring: Ring) -> Widening:
    def source(column: int) -> int | None:
        image = column - ring.pad_left
        return image if 0 <= image < x.w else None

    pairs = ring.columns // LANES
    inside = [p for p in range(pairs)
              if source(2 * p) is not None and source(2 * p + 1) is not None]
    begin, end = (inside[0], inside[-1] + 1) if inside else (0, 0)
    edges = tuple((p, source(2 * p), source(2 * p + 1)) for p in range(pairs)
                  if not begin <= p < end)
    return Widening(pairs=pairs, inside_begin=begin, inside_end=end, edges=edges)


def _short(op: DepthwiseConv2D, graph: Graph, names: LayerNames, weights: np.ndarray,
           bias: np.ndarray, g: Window) -> tuple[ShortRequantization | None, object]:
    out = requantization(op, graph, names, weights.shape[-1])
    weight_max = max(128, int(np.abs(weights).max(initial=0)))
    return short_requantization(out, accumulator_bound(g, bias, weight_max)), out


def _applies(op: Op, graph: Graph, target: Target) -> bool:
    """Stride 1 or 2 across, no dilation, kernels up to MAX_KERNEL_WIDTH wide, the short
    requantization."""
    x, y, g = _geometry(op, graph)
    if (g.dil_h, g.dil_w) != (1, 1) or g.stride_w > 2 or g.k_w > MAX_KERNEL_WIDTH:
        return False
    weights = weight_values(graph.tensor(op.filter))[0]
    short, _ = _short(op, graph, LayerNames("", 0, ""), weights, model_bias(op, graph, y.c), g)
    return short is not None


def _lower(op: DepthwiseConv2D, graph: Graph, target: Target,
           names: LayerNames) -> DepthwisePairsParams:
    x, y, g = _geometry(op, graph)
    weights = weight_values(graph.tensor(op.filter))[0]  # [KH, KW, Cout], w - zero point
    bias = model_bias(op, graph, y.c)
    short, _ = _short(op, graph, names, weights, bias, g)
    assert short is not None, "selection checked the short requantization"
    zero_point = graph.tensor(op.input).zero_point
    folded = folded_bias(bias, weights.reshape(-1, y.c).T, zero_point).astype(np.int64)
    pair, single = _plans(g)
    ring = _ring(x, y, g, pair, single)
    header = np.stack([2 * folded, short.multiplier, short.rounding, short.exponent], axis=1)
    records = np.concatenate([header, weight_words(weights, pair).astype(np.int64)], axis=1)
    channels = ConstArray(names.table("channels"), "int32_t", records.reshape(-1)).as_int32()
    return DepthwisePairsParams(
        input=x, output=y, window=g, depth_multiplier=op.depth_multiplier,
        zero_point=zero_point, ring=ring, widening=_widening(x, ring), pair=pair,
        single=single, pairs=y.w // 2, column_step=g.stride_w, channels=channels,
        channel_words=records.shape[1], short=short, requantize=_requantize_function(short))


def _lower_blocks(block: int):
    def lower(op: DepthwiseConv2D, graph: Graph, target: Target,
              names: LayerNames) -> DepthwisePairsParams:
        """The ring variant's record with `block` planes, re-widened for every output row
        (module docstring): the whole output row is the access block."""
        params = _lower(op, graph, target, names)
        ring = dataclasses.replace(params.ring, planes=block)
        return dataclasses.replace(params, ring=ring, widening=_widening(params.input, ring),
                                   channel_block=block, block_pixels=params.output.w)
    return lower


def _requantize_function(short: ShortRequantization) -> str:
    """SMMLAR adds K with the high multiply where the sign correction is skipped."""
    return DW_SHORT_CLAMPED if short.skip_sign_correction else dsp_short_function(short)


def _plans(g: Window) -> tuple[RowPlan, RowPlan]:
    """A pair of output columns, and the odd last column with the pair's weight words (one
    record per channel serves both)."""
    pair = mac_plan(2, g.stride_w, g.k_h, g.k_w)
    return pair, mac_plan(1, g.stride_w, g.k_h, g.k_w, pair.weight_taps)


def _scratch_bytes(op: Op, graph: Graph, target: Target) -> int:
    """The ring of widened input rows (Ring.bytes)."""
    x, y, g = _geometry(op, graph)
    return _ring(x, y, g, *_plans(g)).bytes


def _applies_blocks(block: int):
    def applies(op: Op, graph: Graph, target: Target) -> bool:
        """The ring variant's shapes, with whole blocks of channels and a ring larger than a
        block's planes."""
        x = feature_map(graph.tensor(op.input))
        return x.c % block == 0 and x.c > block and _applies(op, graph, target)
    return applies


def _blocks_scratch_bytes(block: int):
    def scratch_bytes(op: Op, graph: Graph, target: Target) -> int:
        """KH widened rows of `block` planes."""
        x, y, g = _geometry(op, graph)
        return dataclasses.replace(_ring(x, y, g, *_plans(g)), planes=block).bytes
    return scratch_bytes


DW_CONV_S8_PAIRS_DSP = Variant(
    "dw_conv_s8_pairs_dsp", (DepthwiseConv2D,), Isa.DSP, "dw_conv_s8_pairs_dsp", Order.RASTER,
    _lower, applies=_applies, scratch_bytes=_scratch_bytes,
    helpers=("pw_conv_s8_dsp_helpers", "dw_conv_s8_pairs_dsp_helpers"), row_ranges=True,
    legacy=True, trades_ram=True, keeps_input_rows=True)

# After the ring variant, which takes every op they do: chosen only where the ring's scratch
# does not fit the budget (compile.py's small-scratch tiers).
def _blocks_variant(name: str, tier: int) -> Variant:
    block = CHANNEL_BLOCKS[tier]
    return Variant(
        name, (DepthwiseConv2D,), Isa.DSP, "dw_conv_s8_pairs_dsp", Order.RASTER,
        _lower_blocks(block), applies=_applies_blocks(block),
        scratch_bytes=_blocks_scratch_bytes(block),
        helpers=("pw_conv_s8_dsp_helpers", "dw_conv_s8_pairs_dsp_helpers"), row_ranges=True,
        legacy=True, trades_ram=True, small_scratch=tier,
        slower_per_mac=per_mac(SLOWER_PER_MAC[tier]))


DW_CONV_S8_PAIRS_BLOCKS_DSP = _blocks_variant("dw_conv_s8_pairs_blocks_dsp", 1)
DW_CONV_S8_PAIRS_BLOCKS2_DSP = _blocks_variant("dw_conv_s8_pairs_blocks2_dsp", 2)

VARIANTS = (DW_CONV_S8_PAIRS_DSP, DW_CONV_S8_PAIRS_BLOCKS_DSP, DW_CONV_S8_PAIRS_BLOCKS2_DSP)
