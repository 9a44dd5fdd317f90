"""General convolutions of short windows on DSP cores (a MobileNet's first layer: 3x3 by 3
input channels, stride 2), by widened rows instead of gathered windows.

Per output row, each of the KH input rows under it is sign-extended once into int16 lanes in
arena scratch, with the zero point in the padding columns (so the input offset folds into the
bias, as in kernels/conv.py). A window's row is then KW * Cin consecutive lanes of a widened
row, which SMLAD reads two at a time straight from there: nothing is gathered per pixel, and
the weights, stored as int16 pairs at generation time (doubled where the short requantization
wants a doubled accumulator), need no SXTB16. The products are unrolled at generation time:
two output pixels by four channels (eight accumulators) per pass, each word of inputs loaded
once for four channels and each word of weights once for two pixels; a last odd pixel by four
channels; channels past a multiple of four computed against zero weights and not stored.

The int16 weights cost twice the int8 filter in flash, which the report's weight bytes show;
the variant takes only windows of a few words (a first convolution's: small filters), where
that is a few hundred bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..ir import Conv2D, Graph, Op
from ..targets import Target
from .lowering import (FeatureMap, Requantization, Window, conv_window, feature_map,
                       split_weights)
from .pointwise import DSP_BLOCK_PIXELS, is_pointwise, matrix_dsp
from .requantize import ShortRequantization
from .variant import ConstArray, Isa, LayerNames, Order, Variant

CHANNEL_BLOCK = 4  # output channels a pass: eight accumulators for two pixels
# The unrolled products' size: int16 pairs per window row, and in the whole window. Each
# pair of the window is 12 instructions of the two-pixel product (and 6 of a last odd
# pixel's): 16 pairs (a 3x3 window of up to 3 channels, 5x5 of one) keep a model's code
# within a few hundred bytes of the gathering variant's; DS-CNN's 10x4 window (20 pairs) grew
# its code by 15 %.
MAX_ROW_WORDS = 8
MAX_WINDOW_WORDS = 16
MAX_LOAD_OFFSET = 4095


@dataclass(frozen=True)
class ConvRowsParams:
    input: FeatureMap
    output: FeatureMap
    window: Window
    zero_point: int  # every lane of a widened row outside the image
    row_lanes: int  # int16 lanes per widened row (even): the image's row and its padding
    left_lanes: int  # lanes before the first input widened: pad_left * Cin (0 if cropped)
    # A column tile's input is cropped (a negative padding, tiles.py): the bytes of each
    # input row before its first column read, and the bytes widened from there (the row's
    # columns a window reads).
    source_offset: int
    widened_bytes: int
    words: int  # int16 pairs per window row: ceil(KW * Cin / 2), a last odd lane times 0
    pixel_lanes: int  # lanes from one output pixel's window to the next's: stride_w * Cin
    # Per block of four channels, per window row, per pair: four channels' int16 weight
    # pairs (lane 0 low), doubled with the short requantization; zero past the last channel.
    filter: ConstArray
    # As MatrixDsp.channels: with the short requantization, per channel the doubled bias,
    # multiplier, K and e; otherwise the bias alone. The input offset is folded in.
    channels: ConstArray
    outputs: int
    short: ShortRequantization | None
    out: Requantization | None
    requantize: str | None
    block_pixels: int

    @property
    def words_per_channel(self) -> int:
        return 4 if self.short is not None else 1

    @property
    def terms(self) -> int:
        """Weight pairs per channel: the whole window."""
        return self.window.k_h * self.words

    @property
    def full_blocks(self) -> int:
        return self.outputs // CHANNEL_BLOCK

    @property
    def last_block(self) -> int:
        """Channels of a last partial block (0 if none)."""
        return self.outputs % CHANNEL_BLOCK


def row_words(op: Op, graph: Graph) -> int:
    _, _, kw, in_c = graph.tensor(op.filter).shape
    return -(-kw * in_c // 2)


def _applies(op: Op, graph: Graph, target: Target) -> bool:
    if is_pointwise(op, graph) or op.dilation != (1, 1):
        return False
    # A column tile's first convolution (tiles.py) crops its input's columns by a negative
    # padding (the widened rows start at the first column read); never its rows.
    if min(op.padding.top, op.padding.bottom) < 0:
        return False
    _, kh, kw, _ = graph.tensor(op.filter).shape
    words = row_words(op, graph)
    if words > MAX_ROW_WORDS or kh * words > MAX_WINDOW_WORDS:
        return False
    # The unrolled loads address a block's inputs from its first window by LDR's immediate
    # offset (0 to 4095 bytes): the widened rows under one window must be within its reach.
    x, y = feature_map(graph.tensor(op.input)), feature_map(graph.tensor(op.output))
    window = conv_window(op, graph)
    lanes = (kh - 1) * row_lanes(x, y, window, words, op.padding.right) \
        + window.stride_w * x.c + 2 * words
    return 2 * lanes <= MAX_LOAD_OFFSET


def weight_pairs(weights: np.ndarray, words: int, doubled: bool) -> np.ndarray:
    """The filter [Cout, KH, KW, Cin] as ConvRowsParams.filter lays it out, as int32 words."""
    out_c, kh, kw, in_c = weights.shape
    lanes = np.zeros((out_c, kh, 2 * words), np.int32)
    lanes[:, :, :kw * in_c] = weights.reshape(out_c, kh, kw * in_c)
    if doubled:
        lanes *= 2  # |2 w| <= 256 fits an int16 lane
    blocks = -(-out_c // CHANNEL_BLOCK)
    padded = np.zeros((blocks * CHANNEL_BLOCK, kh, 2 * words), np.int32)
    padded[:out_c] = lanes
    low, high = padded[..., 0::2] & 0xFFFF, padded[..., 1::2] << 16
    pairs = (low | high).astype(np.uint32).view(np.int32)  # [channel, ky, word]
    return pairs.reshape(blocks, CHANNEL_BLOCK, kh, words).transpose(0, 2, 3, 1).reshape(-1)


def widened_columns(x: FeatureMap, window: Window, pad_right: int) -> tuple[int, int]:
    """The input columns [first, last) a widened row holds: the image's, less those a
    negative padding crops (a column tile's, tiles.py)."""
    return max(-window.pad_left, 0), x.w + min(pad_right, 0)


def row_lanes(x: FeatureMap, y: FeatureMap, window: Window, words: int,
              pad_right: int = 0) -> int:
    """A widened row holds the image's row (its columns widened_columns) after its left
    padding and reaches past the last window's last pair."""
    first, last = widened_columns(x, window, pad_right)
    needed = max(max(window.pad_left, 0) * x.c + (last - first) * x.c,
                 (y.w - 1) * window.stride_w * x.c + 2 * words)
    return needed + needed % 2


def _lower(op: Conv2D, graph: Graph, target: Target, names: LayerNames) -> ConvRowsParams:
    split = split_weights(graph.tensor(op.filter))
    weights = split.stored
    out_c, kh, kw, in_c = weights.shape
    window = conv_window(op, graph)
    x, y = feature_map(graph.tensor(op.input)), feature_map(graph.tensor(op.output))
    words = row_words(op, graph)
    # The matrix kernels' bias, bounds and requantization: the same sums of the same products.
    matrix = matrix_dsp(split, op, graph, names, target)
    first, last = widened_columns(x, window, op.padding.right)
    return ConvRowsParams(
        input=x, output=y, window=window, zero_point=graph.tensor(op.input).zero_point,
        row_lanes=row_lanes(x, y, window, words, op.padding.right),
        left_lanes=max(window.pad_left, 0) * x.c, source_offset=first * x.c,
        widened_bytes=(last - first) * x.c,
        words=words, pixel_lanes=window.stride_w * x.c,
        filter=ConstArray(names.table("filter"), "int32_t",
                          weight_pairs(weights, words, matrix.doubled)),
        channels=matrix.channels, outputs=out_c, short=matrix.short, out=matrix.out,
        requantize=matrix.requantize, block_pixels=DSP_BLOCK_PIXELS)


def rows_scratch_bytes(op: Op, graph: Graph, target: Target) -> int:
    """KH widened rows of int16 lanes."""
    _, kh, kw, _ = graph.tensor(op.filter).shape
    x, y = feature_map(graph.tensor(op.input)), feature_map(graph.tensor(op.output))
    return 2 * kh * row_lanes(x, y, conv_window(op, graph), row_words(op, graph),
                              op.padding.right)


CONV_S8_ROWS_DSP = Variant(
    "conv_s8_rows_dsp", (Conv2D,), Isa.DSP, "conv_s8_rows_dsp", Order.RASTER, _lower,
    applies=_applies, scratch_bytes=rows_scratch_bytes,
    helpers=("pw_conv_s8_dsp_helpers", "conv_rows_dsp_helpers"),
    row_ranges=True, trades_ram=True)

VARIANTS = (CONV_S8_ROWS_DSP,)
