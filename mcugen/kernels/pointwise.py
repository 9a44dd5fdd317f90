"""1x1 convolutions (stride 1, no padding): a matrix product of the pixels [P, Cin] with the
filter [Cout, Cin], one output pixel after another (raster order).

Variants, for every shape:
- DSP: three pixels at a time (two where three columns would not fit the stack buffer),
  sign-extended once into int16 lanes (on the stack, or arena scratch for deep columns), by
  two output channels (SMLAD, two int8 products each) whose
  filter rows are interleaved word by word at generation time (interleaved_rows: one LDRD
  a group, sign-extended once for the three pixels), in a loop of inline assembly
  (templates/kernels/pw_conv_s8_dsp_helpers.c.j2); a call's last two pixels by the two-pixel
  product, a last pixel or odd channel by plain C; the short requantization where the
  layer's bounds allow it (kernels/requantize.py);
- ARMv7-M (no DSP): two pixels by two channels of int32 multiply-accumulates;
- portable C: one pixel by two channels.
Both take the short requantization where the bounds allow it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np

from ..ir import Conv2D, Graph, Op, Tensor
from ..targets import Target
from .lowering import (REQUANTIZE_SINGLE, FeatureMap, Requantization, SplitWeights, bias_array,
                       feature_map, folded_bias, model_bias, requantization, split_weights)
from .requantize import (DSP_SHORT, ShortRequantization, dsp_short_function,
                         portable_short_function, short_requantization)
from .variant import ConstArray, Isa, LayerNames, Order, Variant


@dataclass(frozen=True)
class PointwiseParams:
    """The portable variants' parameters: a block of pixels by two output channels a pass,
    int8 products accumulated in int32 (MLA on ARMv7-M, MULS and ADDS on ARMv6-M)."""

    input: FeatureMap  # pixels (or rows of a fully connected layer) x Cin
    output: FeatureMap
    filter: ConstArray  # [Cout][Cin], the model's layout
    # With the short requantization, per output channel the bias, multiplier, K and e as four
    # words; otherwise the bias alone (TFLite's sequence, out). The input offset is folded into
    # the bias: there is no padding to skip.
    channels: ConstArray
    short: ShortRequantization | None
    out: Requantization | None
    requantize: str | None  # the C function of the short sequence
    block_pixels: int  # pixels computed together (their writes may precede the block's reads)
    row_channels: int  # channels a pass for a block of one pixel (4 where registers allow)
    offset: int = 0  # the weight offset (lowering.SplitWeights): offset * sum(pixel) per pixel

    @property
    def words(self) -> int:
        """Words per channel in the table."""
        return 4 if self.short is not None else 1


@dataclass(frozen=True)
class MatrixDsp:
    """The matrix product of the DSP kernels (pointwise, fully connected, convolution):
    columns of `depth` inputs, sign-extended into int16 lanes, times filter rows.

    The filter is stored as `interleaved_rows` lays it out: each row padded with zeros to
    `groups` words of four int8 weights, the rows taken in pairs whose words alternate (row
    2j's word g, then row 2j + 1's: one LDRD fetches what a group of a pair needs), an odd
    last row alone."""

    depth: int  # inputs per column: Cin, or KH * KW * Cin
    outputs: int  # filter rows: output channels
    filter: ConstArray  # interleaved_rows(weight rows)
    # With the short requantization, per output channel the doubled bias, multiplier, K and
    # e as four words (one load multiple); otherwise the bias alone (TFLite's sequence, out).
    channels: ConstArray
    groups: int  # words of four inputs per column: ceil(depth / 4)
    short: ShortRequantization | None  # the short sequence, or None and:
    out: Requantization | None  # TFLite's general sequence
    requantize: str | None  # the C function of the short sequence
    # The weight offset (lowering.SplitWeights): each column adds offset * (the sum of its
    # lanes, doubled with them) to its accumulators.
    offset: int = 0
    block_columns: int = 2  # columns extended together: the buffer holds this many

    @property
    def doubled(self) -> bool:
        """Inputs are extended doubled, and the bias stored doubled (the short sequence)."""
        return self.short is not None

    @property
    def row_bytes(self) -> int:
        """A filter row padded to whole words."""
        return 4 * self.groups

    @property
    def pairs(self) -> int:
        """Pairs of filter rows (an odd last row is alone after them)."""
        return self.outputs // 2

    @property
    def quads(self) -> int:
        """Blocks of two pairs of rows that one column (a fully connected layer's) meets four
        outputs at a time; a last odd pair goes alone after them."""
        return self.pairs // 2

    @property
    def column_bytes(self) -> int:
        """The block's columns: two words per group of four inputs each."""
        return column_bytes(self.depth, self.block_columns)

    @property
    def column_on_stack(self) -> bool:
        return self.column_bytes <= STACK_COLUMN_MAX_BYTES


@dataclass(frozen=True)
class SharedTail:
    """A pointwise DSP function shared out of line by the layers under the short
    requantization (its template's name, `prefix`, and the requantization's C function); each
    kind below is its own class, so that kinds never compare equal."""

    requantize: str  # the C function of the short sequence
    prefix: ClassVar[str] = ""

    @property
    def name(self) -> str:
        return f"{self.prefix}_{self.requantize}"


@dataclass(frozen=True)
class SharedColumn(SharedTail):
    """The pointwise DSP variant's last pixel of a call (a row range whose pixels are not whole
    blocks) under the short requantization: one out-of-line C function
    (templates/kernels/pw_column_s8_dsp.c.j2) then serves every such pointwise layer,
    whatever its depth, channel count, weight offset or clamp (arguments: it runs once a call,
    so its call and run-time bounds cost a few instructions a call), where each layer would
    otherwise inline its own copy of the one-pixel products (300 to 600 bytes of code a
    layer on the Cortex-M7)."""

    prefix: ClassVar[str] = "pw_column_s8_dsp"
    # The channel counts modulo 4 of the layers that call it (codegen: their union), whose
    # last two channels and last channel it then computes; None: any count.
    channels_left: tuple[int, ...] | None = None

    @property
    def two_left(self) -> bool:
        return self.channels_left is None or any(n >= 2 for n in self.channels_left)

    @property
    def one_left(self) -> bool:
        return self.channels_left is None or any(n % 2 for n in self.channels_left)


@dataclass(frozen=True)
class SharedPair(SharedTail):
    """The same for a call's last two pixels (templates/kernels/pw_pair_s8_dsp.c.j2), left
    by a layer of three-pixel blocks: by the 2x2 product, as the layer's own tail, its group
    count a run-time value. A band schedule's calls of rows of 56 pixels (MobileNetV2 224's
    third stage) leave two."""

    prefix: ClassVar[str] = "pw_pair_s8_dsp"
    channels_left: tuple[int, ...] | None = None  # as SharedColumn's

    @property
    def one_left(self) -> bool:
        return self.channels_left is None or any(n % 2 for n in self.channels_left)


@dataclass(frozen=True)
class SharedOddRow(SharedTail):
    """The same for the odd last filter row of a layer of three-pixel blocks under the short
    requantization (templates/kernels/pw_row3_s8_dsp.c.j2): once a block, against the
    block's pairs of rows (a call per block of 3 x outputs outputs: a few instructions per
    thousand on VWW's odd layers), where each layer with an odd channel count (dead channels
    removed, MobileNet widths rounded by alpha) inlined its own copy."""

    prefix: ClassVar[str] = "pw_row3_s8_dsp"


@dataclass(frozen=True)
class PointwiseDspParams:
    input: FeatureMap  # pixels (or rows of a fully connected layer) x Cin
    output: FeatureMap
    matrix: MatrixDsp
    block_pixels: int  # pixels computed together (their writes may precede the block's reads)
    # A call's last pixel by this shared function (codegen keeps it where two or more layer
    # functions call it), else by the layer's own code.
    shared_column: SharedColumn | None = None
    shared_pair: SharedPair | None = None  # the same for a call's last two pixels
    shared_odd_row: SharedOddRow | None = None  # a block's odd last row by this function
    # Rows written channel-planar for a depthwise reader (kernels/depthwise_planar.py): the
    # pixels go in blocks of matrix.block_columns, and the planner's block is the row.
    planar_output: bool = False

    @property
    def whole_blocks(self) -> bool:
        return rows_in_whole_blocks(self.output, self.block_pixels)

    @property
    def straddles(self) -> bool:
        """Whether a block of a call of several rows may end in the next row (planar output:
        its outputs then go to two rows, the template's `straddle`)."""
        return self.planar_output and self.output.w % self.matrix.block_columns != 0


def rows_in_whole_blocks(output: FeatureMap, block_pixels: int) -> bool:
    """Whether every call's pixels are whole blocks: a call computes whole output rows (a
    range, in a band schedule), so when a row is whole blocks no pixel is left over and the
    kernel needs no loop for one (a compiler sees it only when the rows are constants)."""
    return output.w % block_pixels == 0


DSP_BLOCK_PIXELS = 2  # the convolutions' block (conv.py, conv_rows.py)
# Pointwise and fully connected layers: three pixels share each pair of extended weight words
# (pw_dot_3x2; the fourteen registers it needs are all there are), where their columns fit the
# stack buffer (see pw_block_pixels).
PW_DSP_BLOCK_PIXELS = 3
# The extended inputs go on the stack up to this size (depth 256 for two columns, 168 for
# three), below the frames other layers already take, and in arena scratch above it: a scratch
# buffer at the arena's peak (an early layer of a high resolution) would raise the peak; a
# MobileNet's 256-deep layers come late, where the arena is small.
STACK_COLUMN_MAX_BYTES = 1024


def is_pointwise(op: Op, graph: Graph, target: Target | None = None) -> bool:
    if not isinstance(op, Conv2D):
        return False
    kh, kw = graph.tensor(op.filter).shape[1:3]
    return (kh, kw) == (1, 1) and op.stride == (1, 1) and op.padding.is_zero


def matrix_params(weights: Tensor, rows: FeatureMap, outputs: FeatureMap, op: Op, graph: Graph,
                  names: LayerNames, block_pixels: int) -> PointwiseParams:
    """The portable parameters of a product of rows [P, depth] with weights [outputs, depth]."""
    split = split_weights(weights)
    weight_rows = split.stored.reshape(outputs.c, -1)
    model = model_bias(op, graph, outputs.c)
    folded = folded_bias(model, weight_rows, graph.tensor(op.input).zero_point,
                         split.offset).astype(np.int64)
    out = requantization(op, graph, names, outputs.c)
    short = None if out.function == REQUANTIZE_SINGLE else \
        short_requantization(out, _accumulator_bound(model, folded, rows.c, split.offset))
    if short is None:
        channels = bias_array(names, folded)
    else:
        words = np.stack([folded, short.multiplier, short.rounding, short.exponent], axis=1)
        channels = ConstArray(names.table("channels"), "int32_t", words.reshape(-1)).as_int32()
    return PointwiseParams(
        input=rows, output=outputs,
        filter=ConstArray(names.table("filter"), "int8_t", weight_rows.reshape(-1)),
        channels=channels, short=short, out=out if short is None else None,
        requantize=portable_short_function(short), block_pixels=block_pixels,
        row_channels=4 if block_pixels > 1 else 2, offset=split.offset)


def _accumulator_bound(model: np.ndarray, folded: np.ndarray, depth: int,
                       offset: int = 0) -> int:
    """|acc| of the true accumulator sum((x - zp) w) + b (|x - zp| <= 256, |w| <= 128 +
    |offset|), and of the partial sums from the folded bias (the weight offset's input sum
    first, then products of |x| <= 128 and stored |w| <= 128), stay below this."""
    stored = depth * 128 * 128
    return max(int(np.abs(model).max(initial=0)) + depth * 256 * (128 + abs(offset)),
               int(np.abs(folded).max(initial=0)) + abs(offset) * depth * 128 + stored)


def interleaved_rows(weight_rows: np.ndarray) -> np.ndarray:
    """The filter rows [outputs, depth] in the DSP kernels' order (MatrixDsp): rows padded to
    whole words, pairs of rows word by word, an odd last row alone."""
    outputs, depth = weight_rows.shape
    groups = -(-depth // 4)
    words = np.zeros((outputs, groups * 4), np.int8)
    words[:, :depth] = weight_rows
    words = words.reshape(outputs, groups, 4)
    paired = outputs - outputs % 2
    pairs = words[:paired].reshape(paired // 2, 2, groups, 4).transpose(0, 2, 1, 3)
    flat = np.concatenate([pairs.reshape(-1), words[paired:].reshape(-1)])
    _check_interleaved(flat, words)
    return flat


def _check_interleaved(flat: np.ndarray, words: np.ndarray) -> None:
    """The contract the C reads by: pair j's group g at byte 8 (j groups + g), row 2j's word
    first; the odd last row's group g at 8 pairs groups + 4 g; nothing after it."""
    outputs, groups, _ = words.shape
    rows, g = np.arange(outputs)[:, None], np.arange(groups)[None, :]
    pair, second = rows // 2, rows % 2
    at = np.where(rows < outputs - outputs % 2, 8 * (pair * groups + g) + 4 * second,
                  8 * pair * groups + 4 * g)
    if not np.array_equal(flat[at[..., None] + np.arange(4)], words):
        raise AssertionError("interleaved filter rows are not where the DSP kernels read them")
    if flat.size != outputs * groups * 4:
        raise AssertionError("interleaved filter: not one word per row and group")


def matrix_dsp(split: SplitWeights, op: Op, graph: Graph, names: LayerNames,
               target: Target, block_columns: int = DSP_BLOCK_PIXELS) -> MatrixDsp:
    """The DSP matrix of a layer with weight rows [outputs, depth] and its bias and
    requantization, the input offset folded into the bias (every input a column reads is a
    real input or the zero point)."""
    weight_rows = split.stored.reshape(split.stored.shape[0], -1)
    outputs, depth = weight_rows.shape
    model = model_bias(op, graph, outputs)
    folded = folded_bias(model, weight_rows, graph.tensor(op.input).zero_point,
                         split.offset).astype(np.int64)
    out = requantization(op, graph, names, outputs)
    short = short_requantization(out, _accumulator_bound(model, folded, depth, split.offset))
    if short is None:
        channels = bias_array(names, folded)
    else:
        words = np.stack([2 * folded, short.multiplier, short.rounding, short.exponent], axis=1)
        channels = ConstArray(names.table("channels"), "int32_t", words.reshape(-1))
    return MatrixDsp(
        depth=depth, outputs=outputs,
        filter=ConstArray(names.table("filter"), "int8_t", interleaved_rows(weight_rows)),
        channels=channels.as_int32(), groups=-(-depth // 4), short=short,
        out=out if short is None else None, requantize=dsp_short_function(short),
        offset=split.offset, block_columns=block_columns)


def matrix_dsp_params(weights: Tensor, rows: FeatureMap, outputs: FeatureMap, op: Op,
                      graph: Graph, names: LayerNames, target: Target) -> PointwiseDspParams:
    """The DSP variant's parameters for rows [P, depth] times weights [outputs, depth]."""
    block = pw_block_pixels(rows.c)
    matrix = matrix_dsp(split_weights(weights), op, graph, names, target, block)
    return PointwiseDspParams(input=rows, output=outputs, matrix=matrix, block_pixels=block)


def pw_block_pixels(depth: int) -> int:
    """Pixels a block of the pointwise and fully connected DSP kernel: three where their
    columns fit the stack buffer (depth up to 168), else two as before (their columns on the
    stack up to depth 256, else in arena scratch): a third column would move a layer's columns
    from the stack into the arena, or grow its scratch, and raise a tight arena (row bands at
    the smallest budget reachable)."""
    fits = column_bytes(depth, PW_DSP_BLOCK_PIXELS) <= STACK_COLUMN_MAX_BYTES
    return PW_DSP_BLOCK_PIXELS if fits else DSP_BLOCK_PIXELS


def column_bytes(depth: int, columns: int = DSP_BLOCK_PIXELS) -> int:
    """`columns` columns of `depth` inputs: two words per group of four each."""
    return columns * 8 * -(-depth // 4)


def dsp_scratch_bytes(depth: int, columns: int = DSP_BLOCK_PIXELS) -> int:
    """Arena scratch for columns too large for the stack."""
    column = column_bytes(depth, columns)
    return 0 if column <= STACK_COLUMN_MAX_BYTES else column


def _lowering(block_pixels: int):
    def lower(op: Conv2D, graph: Graph, target: Target, names: LayerNames) -> PointwiseParams:
        return matrix_params(graph.tensor(op.filter), feature_map(graph.tensor(op.input)),
                             feature_map(graph.tensor(op.output)), op, graph, names,
                             block_pixels)
    return lower


# A layer of fewer output pixels than this keeps its own tails (at constant sizes): its tail
# is much of its work or all of it (a squeeze-and-excite block's 1x1 layers, MobileNetV3's 1
# pixel: through the shared function's run-time sizes, +20 % instructions a layer; v3-small
# 0.35 96 on M7 +0.59 %), where a 3x3 layer's one pixel in nine costs it +0.6 %.
SHARED_TAIL_MIN_PIXELS = 9


def _lower_dsp(op: Conv2D, graph: Graph, target: Target, names: LayerNames
               ) -> PointwiseDspParams:
    params = matrix_dsp_params(graph.tensor(op.filter), feature_map(graph.tensor(op.input)),
                               feature_map(graph.tensor(op.output)), op, graph, names, target)
    if params.matrix.short is None:
        return params
    if params.block_pixels == 3 and params.matrix.outputs % 2:
        params = replace(params, shared_odd_row=SharedOddRow(DSP_SHORT))
    if params.whole_blocks or params.output.pixels < SHARED_TAIL_MIN_PIXELS:
        return params
    # The tail functions layers may share: under the short requantization (four words a
    # channel), where a call's pixels may leave one or two over (codegen drops each where
    # the schedule's calls leave none such). With the sign correction, whatever the layer's
    # own form: the full sequence is exact for every clamp (kernels/requantize.py), so one
    # function serves layers of either form, at an instruction an output of a tail.
    pair = SharedPair(DSP_SHORT) if params.block_pixels == 3 else None
    return replace(params, shared_column=SharedColumn(DSP_SHORT), shared_pair=pair)


def _lower_dsp_planar(op: Conv2D, graph: Graph, target: Target, names: LayerNames
                      ) -> PointwiseDspParams:
    """The DSP variant writing its rows channel-planar (kernels/depthwise_planar.py), its own
    tails (the shared ones write NHWC)."""
    params = matrix_dsp_params(graph.tensor(op.filter), feature_map(graph.tensor(op.input)),
                               feature_map(graph.tensor(op.output)), op, graph, names, target)
    return replace(params, planar_output=True, block_pixels=params.output.w)


def _chosen_with_its_reader(op: Op, graph: Graph, target: Target) -> bool:
    """Chosen with its depthwise reader by kernels.planar_rows, never by first match."""
    return False


def _dsp_scratch(op: Conv2D, graph: Graph, target: Target) -> int:
    depth = graph.tensor(op.filter).shape[3]
    return dsp_scratch_bytes(depth, pw_block_pixels(depth))


PW_CONV_S8_DSP = Variant(
    "pw_conv_s8_dsp", (Conv2D,), Isa.DSP, "pw_conv_s8_dsp", Order.RASTER, _lower_dsp,
    applies=is_pointwise, scratch_bytes=_dsp_scratch, helpers=("pw_conv_s8_dsp_helpers",),
    row_ranges=True, legacy=True)
PW_CONV_S8_PLANAR_DSP = Variant(
    "pw_conv_s8_planar_dsp", (Conv2D,), Isa.DSP, "pw_conv_s8_dsp", Order.RASTER,
    _lower_dsp_planar, applies=_chosen_with_its_reader, scratch_bytes=_dsp_scratch,
    helpers=("pw_conv_s8_dsp_helpers",), row_ranges=True, legacy=True)
# Two pixels by two channels keep ten values in registers: ARMv7-M has the registers (and MLA);
# ARMv6-M's eight low registers take one pixel by two channels.
PW_CONV_S8_ARMV7M = Variant(
    "pw_conv_s8_armv7m", (Conv2D,), Isa.ARMV7M, "pw_conv_s8", Order.RASTER, _lowering(2),
    applies=is_pointwise, helpers=("matrix_helpers",), row_ranges=True, legacy=True,
    columns=True)
PW_CONV_S8 = Variant(
    "pw_conv_s8", (Conv2D,), Isa.PORTABLE, "pw_conv_s8", Order.RASTER, _lowering(1),
    applies=is_pointwise, helpers=("matrix_helpers",), row_ranges=True, legacy=True,
    columns=True)

VARIANTS = (PW_CONV_S8_DSP, PW_CONV_S8_PLANAR_DSP, PW_CONV_S8_ARMV7M, PW_CONV_S8)
