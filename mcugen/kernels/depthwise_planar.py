"""Depthwise 3x3 convolutions at stride 1 or 2 across, on Arm's DSP extension, reading input
rows that their pointwise producer wrote channel-planar.

SMLAD multiplies two int16 lanes by two and adds both products: two MACs an instruction where
its lanes hold two taps of one channel. NHWC puts a channel's columns C bytes apart, so the
other DSP variants gather them (the ring and blocks variants widen and transpose rows into
arena scratch, the lean one multiplies one lane at a time). Here the input needs no gathering:
where a 1x1 convolution on the DSP kernel is the only writer and this layer the only reader of
a tensor, the pointwise layer writes each row of it channel-planar (kernels/__init__.py,
``planar_rows``): row y, channel c, column x at byte (y * C + c) * W + x, the same bytes per
row as NHWC, so band buffers, row views and the planner's row spans are unchanged. One word
then holds four adjacent columns of one channel, and SXTB16 splits it into the even columns
(x, x + 2) and the odd ones (x + 1, x + 3) as int16 lanes.

At stride 2, output column j reads input columns 2j - pad_left .. 2j - pad_left + 2. Two
adjacent outputs read five columns x .. x + 4: a word (x .. x + 3) and a byte (x + 4). Per
kernel row, with W02 = (w0, w2) and w1 lanes of a weight word:

    out0 += SMLAD(even, W02) + odd.bottom * w1           (x w0 + x+2 w2, x+1 w1)
    out1 += even.top * w0 + odd.top * w1 + byte * w2     (x+2, x+3, x+4)

seven instructions for six MACs after the word's load and two SXTB16 and the byte's load,
with no scratch at all (the lean variant spends about eight on four MACs per tap of four
channels, the blocks variant re-widens three rows per output row). At stride 1 two adjacent
outputs read four columns, the word alone:

    out0 += SMLAD(even, W02) + odd.bottom * w1           (x w0 + x+2 w2, x+1 w1)
    out1 += SMLAD(odd, W02) + even.top * w1              (x+1 w0 + x+3 w2, x+2 w1)

four instructions for six MACs. There the ring variant (kernels/depthwise_pairs.py), which
widens each input row once, is faster still, so planar_rows chooses stride 1 only where
selection left the ring out (a budget's small-scratch and lean tiers). Columns outside the
image read the input zero point, whose products the bias already cancels (the input offset is
folded into it): the blocks that reach them (a row's first and last, at most) load the row's
first or last word, shift it into place and fill the emptied bytes with the zero point; rows
outside it read a row of zero points on the stack. Each channel's record (nine words): doubled
bias, the short requantization's multiplier, K and e, then W02 of each kernel row and its w1
(kernel rows 0 and 1 in one word, row 2 alone), all doubled, so that the accumulators come out
doubled as the short requantization (kernels/requantize.py) takes them.

Per output row, channel by channel, the whole row: a row's writes come after its reads, so
the planner takes the output row as the block (its planar input occupies the rows' bytes as
NHWC would).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..ir import Conv2D, DepthwiseConv2D, Graph, Op
from ..targets import Target
from .depthwise import accumulator_bound
from .lowering import (FeatureMap, Window, conv_window, feature_map, folded_bias, model_bias,
                       requantization, split_weights, weight_values)
from .requantize import ShortRequantization, dsp_short_function, short_requantization
from .variant import ConstArray, Isa, LayerNames, Order, Variant

CHANNEL_HEADER = 4  # the record's words before the weights: 2 bias, multiplier, K, e
WEIGHT_WORDS = 5  # W02 of kernel rows 0, 1, 2; (w1 of rows 0, 1); (w1 of row 2, 0)
WORD_COLUMNS = 4  # input columns a word loads
STRIDES = (1, 2)  # across
# The short requantization with K added by SMMLAR (templates/kernels/
# dw_conv_s8_pairs_dsp_helpers.c.j2), where the sign correction is skipped.
DW_SHORT_CLAMPED = "dw_requantize_doubled_clamped"


@dataclass(frozen=True)
class ColumnBlock:
    """Output columns [column, column + outputs) of a row (a pair, or an odd last one) whose
    loads reach outside the image: per column of its word (input columns first .. first + 3)
    and of its byte (first + 4, pairs at stride 2 only), the input column it reads, None for
    the zero point."""

    column: int
    outputs: int
    word: tuple[int | None, ...]
    byte: int | None
    # The word is loaded from the row at load_at, the image columns nearest it (the row is at
    # least a word wide, and the word's image columns are one run), then shifted into place
    # (shift), the emptied bytes filled with the zero point (fill) or, for a column tile's
    # cached halo (ir.DepthwiseConv2D.halo), with bytes of the halo's row: (byte of the word,
    # halo column) in `halo`.
    first: int  # the input column of the word's first byte
    load_at: int
    fill: int  # uint32
    halo: tuple[tuple[int, int], ...] = ()

    @property
    def loads(self) -> bool:
        """Whether the word reads any column of the row (else it is fill and halo alone)."""
        return any(column is not None for column in self.word)

    @property
    def shift(self) -> int:
        """Bits the loaded word moves up (positive: columns left of the image) or down."""
        return 8 * (self.load_at - self.first)


@dataclass(frozen=True)
class DepthwisePlanarParams:
    input: FeatureMap  # channel-planar rows
    output: FeatureMap  # NHWC
    window: Window
    depth_multiplier: int
    zero_point: int  # the input's: what padding holds
    channels: ConstArray  # per output channel: 2 bias, multiplier, K, e, then weight words
    short: ShortRequantization
    requantize: str  # the C function of the short sequence
    head: tuple[ColumnBlock, ...]  # blocks before the interior pairs
    inside_from: int  # interior pairs: output columns [inside_from, inside_to), two a time
    inside_to: int
    tail: tuple[ColumnBlock, ...]  # blocks after them
    pads_rows: bool  # some output row reads a row outside the image
    block_pixels: int = 1
    # The left padding's columns read from a column tile's cached halo (its second operand,
    # channel-planar rows of halo_width columns), not the zero point; 0: none.
    halo_width: int = 0

    @property
    def channel_words(self) -> int:
        return CHANNEL_HEADER + WEIGHT_WORDS

    @property
    def pair_reads_byte(self) -> bool:
        """Whether a pair reads a fifth column after its word (stride 2)."""
        return self.window.stride_w + self.window.k_w > WORD_COLUMNS

    @property
    def inside_first(self) -> int:
        """The input column the first interior pair starts at."""
        return self.window.stride_w * self.inside_from - self.window.pad_left

    @property
    def inside_end(self) -> int:
        """The input column one interior pair past the last starts at."""
        return self.window.stride_w * self.inside_to - self.window.pad_left


def _geometry(op: Op, graph: Graph) -> tuple[FeatureMap, FeatureMap, Window]:
    return (feature_map(graph.tensor(op.input)), feature_map(graph.tensor(op.output)),
            conv_window(op, graph))


def _short(op: DepthwiseConv2D, graph: Graph, names: LayerNames
           ) -> ShortRequantization | None:
    weights = weight_values(graph.tensor(op.filter))[0]
    x, y, g = _geometry(op, graph)
    bias = model_bias(op, graph, y.c)
    out = requantization(op, graph, names, y.c)
    weight_max = max(128, int(np.abs(weights).max(initial=0)))
    return short_requantization(out, accumulator_bound(g, bias, weight_max))


def takes(op: Op, graph: Graph, target: Target) -> bool:
    """The shapes it computes: 3x3, stride 1 or 2 across (any stride down), no dilation,
    depth multiplier 1, an input at least a word wide, the short requantization."""
    if not isinstance(op, DepthwiseConv2D) or op.depth_multiplier != 1:
        return False
    x, y, g = _geometry(op, graph)
    if (g.k_h, g.k_w, g.dil_h, g.dil_w) != (3, 3, 1, 1) or g.stride_w not in STRIDES or \
            x.w < WORD_COLUMNS:
        return False
    return _short(op, graph, LayerNames("", 0, "")) is not None


def faster_in_a_ring(op: Op, graph: Graph) -> bool:
    """Whether the ring variant (kernels/depthwise_pairs.py), where it fits, computes the
    layer faster: at stride 1 it widens each input row once and takes four instructions for
    six MACs as this variant does, without the words' SXTB16 (VWW on the Cortex-M7, layer 5:
    2.0 instructions a MAC against 2.2)."""
    return conv_window(op, graph).stride_w == 1


def _slower_than_a_ring(op: Op, graph: Graph) -> float:
    """Its instructions per MAC beyond the ring variant's where that one is faster
    (faster_in_a_ring; VWW on the Cortex-M7 at --max-ram 12K: 0.12 on 24x13 rows of 32
    channels, 0.33 on 12x12 rows of 64), 0 at stride 2, where it is the fastest."""
    return 0.2 if faster_in_a_ring(op, graph) else 0.0


def writes_planar(op: Op, graph: Graph) -> bool:
    """Whether a layer's output may be channel-planar for this variant: a 1x1 convolution
    (the DSP pointwise kernel writes it, templates/kernels/pw_conv_s8_dsp.c.j2) whose weights
    need no offset (a uint8 model's beyond int8, kernels/lowering.SplitWeights: its blocks'
    column sums leave the planar stores no register; Google's uint8 MobileNet V1 0.25 128 on
    the M7, layer 3: +200 K instructions, +16 %, for 64 K fewer in its depthwise)."""
    return isinstance(op, Conv2D) and graph.tensor(op.filter).shape[1:3] == (1, 1) and \
        split_weights(graph.tensor(op.filter)).offset == 0


def _column_blocks(x: FeatureMap, y: FeatureMap, g: Window, zero_point: int,
                   halo_width: int = 0):
    """The head blocks, the interior pairs' output columns and the tail blocks of a row; the
    halo's columns, where there is one, are the left padding's (their input columns -1,
    -2, ... are its last, next to last, ...)."""
    zero = zero_point % 256
    # A pair's byte (stride 2) is its fifth column: never in a halo of at most four.
    assert halo_width <= WORD_COLUMNS, halo_width

    def source(column: int) -> int | None:
        return column if 0 <= column < x.w else None

    def halo_source(column: int) -> int | None:
        return column + halo_width if -halo_width <= column < 0 else None

    # A pair reads its word and, at stride 2, the byte after it.
    pair_reads = g.stride_w + g.k_w

    def block(column: int, outputs: int) -> ColumnBlock:
        first = g.stride_w * column - g.pad_left
        word = tuple(source(first + i) for i in range(WORD_COLUMNS))
        reads_byte = outputs == 2 and pair_reads > WORD_COLUMNS
        halo = tuple((i, halo_source(first + i)) for i in range(WORD_COLUMNS)
                     if halo_source(first + i) is not None)
        fill = sum(zero << 8 * i for i, c in enumerate(word)
                   if c is None and halo_source(first + i) is None)
        return ColumnBlock(column, outputs, word,
                           source(first + WORD_COLUMNS) if reads_byte else None,
                           first, min(max(first, 0), x.w - WORD_COLUMNS), fill, halo)

    def inside(column: int) -> bool:
        first = g.stride_w * column - g.pad_left
        return first >= 0 and first + pair_reads <= x.w

    pairs = list(range(0, y.w - 1, 2))
    interior = [c for c in pairs if inside(c)]
    start = interior[0] if interior else y.w
    stop = interior[-1] + 2 if interior else y.w
    # The interior is contiguous: a pair's columns grow with it, and only the first pairs
    # may start left of the image, only the last ones reach past it.
    assert interior == list(range(start, stop, 2)), interior
    head = tuple(block(c, 2) for c in pairs if c < start)
    tail = [block(c, 2) for c in pairs if c >= stop]
    if y.w % 2:
        tail.append(block(y.w - 1, 1))
    return head, start, stop, tuple(tail)


def weight_words(weights: np.ndarray) -> np.ndarray:
    """[Cout][5] int32 words of doubled int16 weights (low lane first) from the weights
    [3, 3, Cout] (w - zero point): W02 of rows 0, 1, 2, then (w1 row 0, w1 row 1) and
    (w1 row 2, 0)."""
    doubled = 2 * weights.astype(np.int64)  # |2 (w - z)| <= 510: an int16 lane

    def word(low: np.ndarray, high: np.ndarray) -> np.ndarray:
        return (low & 0xFFFF) | ((high & 0xFFFF) << 16)

    zero = np.zeros(weights.shape[2], np.int64)
    words = [word(doubled[ky, 0], doubled[ky, 2]) for ky in range(3)]
    words += [word(doubled[0, 1], doubled[1, 1]), word(doubled[2, 1], zero)]
    return np.stack(words, axis=1).astype(np.uint32).view(np.int32)


def _lower(op: DepthwiseConv2D, graph: Graph, target: Target,
           names: LayerNames) -> DepthwisePlanarParams:
    x, y, g = _geometry(op, graph)
    weights = weight_values(graph.tensor(op.filter))[0]  # [KH, KW, Cout], w - zero point
    short = _short(op, graph, names)
    assert short is not None, "planar_rows checked the short requantization"
    zero_point = graph.tensor(op.input).zero_point
    folded = folded_bias(model_bias(op, graph, y.c), weights.reshape(-1, y.c).T,
                         zero_point).astype(np.int64)
    header = np.stack([2 * folded, short.multiplier, short.rounding, short.exponent], axis=1)
    records = np.concatenate([header, weight_words(weights).astype(np.int64)], axis=1)
    halo_width = g.pad_left if op.halo is not None else 0
    head, inside_from, inside_to, tail = _column_blocks(x, y, g, zero_point, halo_width)
    rows = [oy * g.stride_h - g.pad_top + ky for oy in range(y.h) for ky in range(g.k_h)]
    return DepthwisePlanarParams(
        input=x, output=y, window=g, depth_multiplier=1, zero_point=zero_point,
        channels=ConstArray(names.table("channels"), "int32_t",
                            records.reshape(-1)).as_int32(),
        short=short, requantize=DW_SHORT_CLAMPED if short.skip_sign_correction
        else dsp_short_function(short),
        head=head, inside_from=inside_from, inside_to=inside_to, tail=tail,
        pads_rows=min(rows) < 0 or max(rows) >= x.h, block_pixels=y.w, halo_width=halo_width)


def _chosen_with_its_writer(op: Op, graph: Graph, target: Target) -> bool:
    """Chosen with its pointwise writer by kernels.planar_rows, never by first match."""
    return False


DW_CONV_S8_PLANAR_DSP = Variant(
    "dw_conv_s8_planar_dsp", (DepthwiseConv2D,), Isa.DSP, "dw_conv_s8_planar_dsp",
    Order.RASTER, _lower, applies=_chosen_with_its_writer, slower_per_mac=_slower_than_a_ring,
    helpers=("pw_conv_s8_dsp_helpers", "dw_conv_s8_pairs_dsp_helpers"), row_ranges=True,
    legacy=True)


# A column tile's last layer with its cached halo (tiles.py), its second operand (binary: the
# layer function's input2): the only variant that takes one (Variant.reads_halo), so first
# match chooses it, and kernels.planar_rows then requires its writer, and its halo's slice,
# to make planar rows.
DW_CONV_S8_PLANAR_HALO_DSP = Variant(
    "dw_conv_s8_planar_halo_dsp", (DepthwiseConv2D,), Isa.DSP, "dw_conv_s8_planar_dsp",
    Order.RASTER, _lower, applies=takes,
    helpers=("pw_conv_s8_dsp_helpers", "dw_conv_s8_pairs_dsp_helpers"), row_ranges=True,
    legacy=True, binary=True, reads_halo=True)

VARIANTS = (DW_CONV_S8_PLANAR_HALO_DSP, DW_CONV_S8_PLANAR_DSP)
