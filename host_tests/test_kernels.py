"""Every kernel variant on hand-built one-op graphs, without TensorFlow: the generated C,
compiled on the host (portable variants) and run in QEMU per instruction set (portable C and
the DSP extension on Cortex-M7), must equal the NumPy reference bit for bit, at the edges
of every variant: channel counts 1, 3, 5, 8, 11, 17, one-pixel maps, stride 2, asymmetric
padding, dilation, depth multipliers 1, 2, 4, 8, per-tensor and per-channel weights."""

from __future__ import annotations

import dataclasses
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

import ir_graphs as g
from conftest import standard_inputs, typed_inputs
from firmware_batch import run_batch
from hostc import build_shared, run_sanitized
from mcugen import ir, tiles
from mcugen.compile import CompiledModel, compile_graph, prepare
from mcugen.kernels import MCUGEN_VARIANTS
from mcugen.kernels.depthwise_pairs import DepthwisePairsParams, record_lanes
from mcugen.kernels.depthwise_planar import CHANNEL_HEADER, DepthwisePlanarParams
from mcugen.kernels.variant import Isa, checked_params
from mcugen.qemu import build_firmware, run_firmware
from mcugen.reference import run_reference
from mcugen.targets import load_target

P0, P1 = ir.Padding(), ir.Padding(1, 1, 1, 1)
SAME_S2 = ir.Padding(0, 1, 0, 1)  # TFLite's SAME with stride 2 on an even size: odd pixel after

CASES = {
    # Pointwise: channel counts around the DSP loop's words of 4 and pairs of 2.
    "pw_1_1": lambda: g.conv(1, 5, 7, 1, 1, (1, 1), padding=P0),
    "pw_3_5": lambda: g.conv(2, 5, 7, 3, 5, (1, 1), padding=P0),
    "pw_8_16": lambda: g.conv(3, 5, 7, 8, 16, (1, 1), padding=P0),
    "pw_8_16_per_tensor": lambda: g.conv(4, 4, 4, 8, 16, (1, 1), padding=P0, per_channel=False),
    "pw_11_17": lambda: g.conv(5, 5, 7, 11, 17, (1, 1), padding=P0),
    "pw_16_11": lambda: g.conv(6, 3, 3, 16, 11, (1, 1), padding=P0),
    "pw_8_16_one_pixel": lambda: g.conv(7, 1, 1, 8, 16, (1, 1), padding=P0),
    "pw_17_3_one_pixel": lambda: g.conv(8, 1, 1, 17, 3, (1, 1), padding=P0,
                                        activation=ir.Activation.NONE),
    # General convolutions.
    "conv_3x3_1_3": lambda: g.conv(10, 6, 5, 1, 3),
    "conv_3x3_s2_same_3_8": lambda: g.conv(11, 10, 10, 3, 8, stride=(2, 2), padding=SAME_S2),
    "conv_5x3_s2x1_5_11": lambda: g.conv(12, 9, 7, 5, 11, (5, 3), (2, 1),
                                         ir.Padding(2, 2, 1, 1)),
    "conv_3x3_dilated_4_4": lambda: g.conv(13, 9, 9, 4, 4, dilation=(2, 2),
                                           padding=ir.Padding(2, 2, 2, 2)),
    "conv_3x3_one_pixel_17_5": lambda: g.conv(14, 1, 1, 17, 5),
    "conv_3x3_per_tensor_8_8": lambda: g.conv(15, 5, 5, 8, 8, per_channel=False),
    "conv_10x4_s2_ds_cnn": lambda: g.conv(16, 49, 10, 1, 8, (10, 4), (2, 2),
                                          ir.Padding(4, 5, 1, 1), activation=ir.Activation.RELU),
    "conv_3x3_valid_3_2": lambda: g.conv(17, 6, 6, 3, 2, padding=P0),
    # conv_s8_pixels_mve (windows of at most 16 bytes; conv_3x3_1_3 above takes it too): a
    # grayscale first layer (SAME stride 2, 11 channels: two blocks of four and a partial
    # one), a pixel count not a multiple of four, two channels in a 2x2 window, dilation.
    "conv_3x3_s2_same_1_11": lambda: g.conv(20, 10, 12, 1, 11, stride=(2, 2), padding=SAME_S2),
    "conv_2x2_2_5_odd_pixels": lambda: g.conv(21, 6, 4, 2, 5, (2, 2), padding=P0),
    "conv_3x3_dilated_1_4": lambda: g.conv(22, 7, 9, 1, 4, dilation=(2, 2),
                                           padding=ir.Padding(2, 2, 2, 2)),
    # ... and a depthwise convolution of a one-channel image to 8 channels or more
    # (dw_3x3_s2_m8_c1 below too).
    "dw_3x3_m9_c1": lambda: g.depthwise(23, 5, 7, 1, multiplier=9),
    # Its windows of two vectors (17 to 32 bytes; conv_3x3_s2_same_3_8 and conv_3x3_valid_3_2
    # above too): borders on every side with a partial last block, window rows of 5 bytes.
    "conv_3x3_3_5": lambda: g.conv(24, 6, 7, 3, 5),
    "conv_5x5_1_4": lambda: g.conv(25, 9, 8, 1, 4, (5, 5), padding=ir.Padding(2, 2, 2, 2)),
    # Helium's edges: rows of more than eight chunks (a DLS/LE loop, with and without a tail),
    # outputs not a multiple of four, odd pixel counts; output scales whose per-channel shifts
    # straddle 0 (left shifts, shifts of 0 and right shifts in one layer).
    "pw_200_9_odd_pixels": lambda: g.conv(18, 3, 5, 200, 9, (1, 1), padding=P0),
    "pw_256_6": lambda: g.conv(19, 2, 3, 256, 6, (1, 1), padding=P0),
    # pw_conv_s8_pixels_mve's edges (depths up to 16; pw_1_1 to pw_16_11 above take it too):
    # two pixels per vector with a spare pixel read past a block, and a tail of more than
    # four pixels (a full and a partial quad); one pixel per vector with a spare pixel and a
    # one-pixel tail.
    "pw_6_9_tail_of_5": lambda: g.conv(120, 1, 13, 6, 9, (1, 1), padding=P0),
    "pw_12_5_one_per_vector": lambda: g.conv(121, 3, 3, 12, 5, (1, 1), padding=P0,
                                             activation=ir.Activation.NONE),
    # Its output stage in the block's assembly (two pixels per vector, right shifts): the
    # clamps above are narrower than int8; here all of it (VQMOVNB saturates), with a whole
    # block and a partial one of seven pixels.
    "pw_7_10_all_of_int8": lambda: g.conv(125, 3, 5, 7, 10, (1, 1), padding=P0,
                                          activation=ir.Activation.NONE),
    # ... and one pixel per vector, two channels a statement (even channel counts): a clamp
    # and a one-pixel tail; all of int8 and a tail of three pixels.
    "pw_12_6_channel_pairs": lambda: g.conv(126, 3, 3, 12, 6, (1, 1), padding=P0),
    "pw_16_8_channel_pairs_all_of_int8": lambda: g.conv(127, 1, 7, 16, 8, (1, 1), padding=P0,
                                                        activation=ir.Activation.NONE),
    # The DSP loop's edges (two groups of four inputs a pass, entered at the second for an odd
    # count; filter rows in pairs, an odd last one alone; columns on the stack, or in arena
    # scratch past 1 KiB, read one group ahead): 65 groups in scratch, odd pixels and outputs;
    # two groups, one pair, even pixels.
    "pw_260_7_scratch_odd_groups": lambda: g.conv(20, 3, 3, 260, 7, (1, 1), padding=P0),
    "pw_5_2_one_pair": lambda: g.conv(21, 2, 2, 5, 2, (1, 1), padding=P0),
    # The 3x2 product's edges (three pixels by a pair of rows, four groups a pass, then two and
    # one; the last one or two pixels of a call by the 2x2 and 1-column products; only where
    # three columns fit the 1 KiB stack buffer): 42 groups (ten passes and two groups), a
    # two-pixel tail; 43 groups, where two pixels a block take over, and a one-pixel tail; five
    # groups (one pass without a loop and one), whole blocks, odd outputs.
    "pw_168_6_stack_tail_of_2": lambda: g.conv(130, 1, 5, 168, 6, (1, 1), padding=P0),
    "pw_172_4_two_pixel_blocks": lambda: g.conv(131, 2, 2, 172, 4, (1, 1), padding=P0),
    "pw_20_9_one_pass": lambda: g.conv(132, 2, 3, 20, 9, (1, 1), padding=P0),
    "conv_3x3_17_6_long_rows": lambda: g.conv(30, 5, 5, 17, 6),
    # conv_s8_pixels_mve's blocks of four windows inside the image on one row (windows of two
    # vectors): an odd output width (blocks across rows, a partial last block), window rows
    # stored predicated where a whole vector would pass the column, two channels a pass;
    # dilated rows; an odd channel count (one channel a pass).
    "conv_3x3_s2_block_windows_3_8": lambda: g.conv(33, 20, 22, 3, 8, stride=(2, 2),
                                                    padding=SAME_S2),
    "conv_3x3_dilated_block_windows_2_6": lambda: g.conv(34, 12, 14, 2, 6, dilation=(2, 1),
                                                         padding=ir.Padding(2, 2, 2, 2)),
    "conv_3x3_block_windows_3_5": lambda: g.conv(35, 7, 13, 3, 5),
    # Its blocks of four windows of one vector inside the image on one row, a gather each:
    # an odd output width; a depthwise convolution of a one-channel image.
    "conv_3x3_s2_block_gathers_1_8": lambda: g.conv(36, 10, 22, 1, 8, stride=(2, 2),
                                                    padding=SAME_S2),
    "dw_3x3_block_gathers_m8_c1": lambda: g.depthwise(37, 6, 13, 1, multiplier=8),
    # Helium's eight-accumulator block (two rows by four channels, rows of three chunks or
    # more): unrolled without a tail (odd pixels, outputs past a multiple of four); looped two
    # chunks an iteration with no odd chunk, without and with a tail, the second row's offset
    # an immediate (144) and not one (273, in a register).
    # Rows of two chunks (two passes of two channels) hold their chunks across both passes:
    # without a tail here, with one in pw_20_9_one_pass.
    "pw_32_6_held_chunks": lambda: g.conv(128, 3, 3, 32, 6, (1, 1), padding=P0),
    "pw_64_7_eight_accumulators": lambda: g.conv(140, 3, 3, 64, 7, (1, 1), padding=P0),
    "pw_144_4_even_loop": lambda: g.conv(141, 2, 3, 144, 4, (1, 1), padding=P0),
    "pw_273_5_even_loop_tail": lambda: g.conv(142, 1, 5, 273, 5, (1, 1), padding=P0),
    "pw_8_16_mixed_shifts": lambda: g.conv(31, 4, 5, 8, 16, (1, 1), padding=P0,
                                           activation=ir.Activation.NONE, spread=16000.0),
    "conv_3x3_mixed_shifts": lambda: g.conv(32, 5, 5, 3, 7, activation=ir.Activation.NONE,
                                            spread=28000.0),
    "dw_3x3_mixed_shifts_c9": lambda: g.depthwise(33, 6, 7, 9, activation=ir.Activation.NONE,
                                                  spread=16000.0),
    # The widened-rows variant's edges (kernels/conv_rows.py): an odd output width (the last
    # pixel alone) and output channels past a multiple of four; stride 1 over three channels
    # (windows at odd lanes: halfword-aligned loads); padding beyond the kernel's reach (rows
    # and columns of zero points only); one input channel; rows too long for its loads' reach
    # (the gathering variant takes them).
    "conv_rows_s2_odd_width_3_5": lambda: g.conv(120, 7, 9, 3, 5, stride=(2, 2)),
    "conv_rows_s1_3_6": lambda: g.conv(121, 5, 7, 3, 6),
    "conv_rows_pad_beyond_2_9": lambda: g.conv(122, 4, 5, 2, 9, padding=ir.Padding(2, 3, 3, 2)),
    "conv_rows_5x5_s2_1_4": lambda: g.conv(123, 9, 8, 1, 4, (5, 5), (2, 2),
                                           ir.Padding(2, 2, 2, 2)),
    "conv_rows_too_long_3_4": lambda: g.conv(124, 3, 400, 3, 4, stride=(1, 2),
                                             padding=SAME_S2),
    # Depthwise.
    **{f"dw_3x3_c{c}": (lambda c=c: g.depthwise(20 + c, 6, 6, c)) for c in (1, 3, 5, 8, 11, 17)},
    "dw_3x3_s2_same_c8": lambda: g.depthwise(40, 8, 8, 8, stride=(2, 2), padding=SAME_S2),
    "dw_3x3_m2_c3": lambda: g.depthwise(41, 6, 5, 3, multiplier=2),
    "dw_3x3_m4_c2": lambda: g.depthwise(42, 6, 5, 2, multiplier=4),
    "dw_3x3_s2_m8_c1": lambda: g.depthwise(43, 9, 9, 1, multiplier=8, stride=(2, 2),
                                           padding=ir.Padding(0, 1, 0, 1)),
    "dw_5x5_c12": lambda: g.depthwise(44, 7, 7, 12, kernel=(5, 5),
                                      padding=ir.Padding(2, 2, 2, 2)),
    "dw_3x3_one_pixel_c16": lambda: g.depthwise(45, 1, 1, 16),
    "dw_3x3_dilated_c8": lambda: g.depthwise(46, 9, 9, 8, dilation=(2, 2),
                                             padding=ir.Padding(2, 2, 2, 2)),
    "dw_3x3_per_tensor_c8": lambda: g.depthwise(47, 5, 5, 8, per_channel=False),
    "dw_3x3_valid_c4": lambda: g.depthwise(48, 5, 5, 4, padding=P0),
    "dw_3x3_no_activation_c4": lambda: g.depthwise(49, 4, 4, 4,
                                                   activation=ir.Activation.NONE),
    # Helium's passes of eight pixels and its combined tails (a block of four and 1-3 more):
    # rows of 13 (ReLU6), of 16 (paired loads; no activation: saturating narrowings) and of
    # 15 (ReLU: the upper bound is int8's own).
    "dw_3x3_rows_of_13_c8": lambda: g.depthwise(50, 3, 13, 8),
    "dw_3x3_rows_of_16_no_activation_c8": lambda: g.depthwise(
        51, 3, 16, 8, activation=ir.Activation.NONE),
    "dw_3x3_rows_of_15_relu_c5": lambda: g.depthwise(52, 3, 15, 5,
                                                     activation=ir.Activation.RELU),
    # The DSP pairs variant's edges (kernels/depthwise_pairs.py): odd output widths (the last
    # column alone), channel counts that are not a multiple of the widening's four, stride 2
    # with odd and even left padding, strides that differ across and down, padding beyond the
    # kernel's reach at every edge (ring rows and column pairs of zero points only), depth
    # multipliers that are not multiples of four, 3x5 and 5x3 kernels, and plane rows too long
    # for STRD's offsets.
    "dw_3x3_odd_width_c7": lambda: g.depthwise(110, 5, 7, 7),
    "dw_3x3_s2_pad1_odd_width_c6": lambda: g.depthwise(111, 9, 9, 6, stride=(2, 2)),
    "dw_3x3_s2x1_c5": lambda: g.depthwise(112, 7, 6, 5, stride=(2, 1)),
    "dw_3x3_s1x2_c9": lambda: g.depthwise(113, 6, 9, 9, stride=(1, 2), padding=SAME_S2),
    "dw_3x3_pad_beyond_c6": lambda: g.depthwise(114, 4, 5, 6, padding=ir.Padding(2, 3, 3, 2)),
    "dw_3x3_m3_c5": lambda: g.depthwise(115, 5, 5, 5, multiplier=3),
    "dw_3x5_c4": lambda: g.depthwise(116, 6, 7, 4, kernel=(3, 5), padding=ir.Padding(1, 1, 2, 2)),
    "dw_5x3_s2_c6": lambda: g.depthwise(117, 9, 7, 6, kernel=(5, 3), stride=(2, 2),
                                        padding=ir.Padding(2, 2, 1, 1)),
    "dw_3x3_long_rows_c4": lambda: g.depthwise(118, 3, 64, 4),
    # Its small-scratch variant (dw_conv_s8_pairs_blocks_dsp: KH rows of four channels,
    # widened again per output row), taken under BUDGETS: three blocks and an odd width, stride
    # 2 with padding beyond the kernel's reach (rows of zero points), a 5x5 kernel with
    # multiplier 2, plane rows too long for STRD's offsets, a uint8 model's offset weights.
    "dw_blocks_3x3_c12_odd_width": lambda: g.depthwise(130, 9, 11, 12),
    "dw_blocks_3x3_s2_pad_beyond_c8": lambda: g.depthwise(131, 9, 9, 8, stride=(2, 2),
                                                          padding=ir.Padding(2, 3, 3, 2)),
    "dw_blocks_5x5_m2_c8": lambda: g.depthwise(132, 6, 7, 8, multiplier=2, kernel=(5, 5),
                                               padding=ir.Padding(2, 2, 2, 2)),
    "dw_blocks_3x3_long_rows_c8": lambda: g.depthwise(134, 3, 64, 8),
    # Its two-channel tier (dw_conv_s8_pairs_blocks2_dsp), under a tighter budget: odd width
    # and padding beyond the kernel's reach; stride 2 with a 5x3 kernel.
    "dw_blocks2_3x3_pad_beyond_c6": lambda: g.depthwise(135, 5, 7, 6,
                                                        padding=ir.Padding(2, 3, 3, 2)),
    "dw_blocks2_5x3_s2_c4": lambda: g.depthwise(136, 9, 8, 4, kernel=(5, 3), stride=(2, 2),
                                                padding=ir.Padding(2, 2, 1, 1)),
    # The Helium variant's paired windows (one load, two pixels; rows of 16 outputs or more):
    # stride 2 with a one-pixel tail, a three-pixel tail, a uint8 model's offset weights.
    "dw_3x3_s2_wide_c5": lambda: g.depthwise(122, 5, 34, 5, stride=(2, 2)),
    "dw_3x3_wide_tail3_c2": lambda: g.depthwise(124, 4, 19, 2),
    # Its channel lanes (narrow rows, four channels of a pixel per pass; activations spanning
    # int8): a partial last group of one, two and three channels; five pixels a row with
    # borders; stride 2 to three pixels; a one-pixel map; padding beyond the kernel's reach
    # (rows and columns of zero points only); a uint8 model's weights that fit int8.
    "dw_lanes_c21": lambda: g.depthwise(140, 5, 5, 21, activation=ir.Activation.NONE),
    "dw_lanes_s2_c30": lambda: g.depthwise(141, 6, 6, 30, stride=(2, 2), padding=SAME_S2,
                                           activation=ir.Activation.NONE),
    "dw_lanes_one_pixel_c7": lambda: g.depthwise(142, 1, 1, 7, activation=ir.Activation.NONE),
    "dw_lanes_pad_beyond_c24": lambda: g.depthwise(143, 3, 2, 24, padding=ir.Padding(2, 3, 3, 2),
                                                   activation=ir.Activation.NONE),
    "legacy_dw_lanes_c12": lambda: g.depthwise(144, 4, 3, 12, legacy_zero_point=0,
                                               activation=ir.Activation.NONE),
    # Its ring filled with a vector of plane offsets per group of eight channels, up to six
    # groups (the ring functions then stay calls): five groups, the last partial; six, stride 2.
    # A 1x1 convolution writing channel-planar rows for its stride-2 depthwise reader
    # (kernels/depthwise_planar.py): SAME on an even width (a zero-point column after), on an
    # odd one (one before and after), stride 1 down, the narrowest input (a word), padding
    # beyond the window, a uint8 model's (its depthwise's weights beyond int8; a pointwise
    # layer's that are keeps NHWC); three pixels a block and two (deep inputs), blocks
    # across a row's end (widths not a whole number of blocks, calls of several rows).
    "planar_s2_same_even_c8": lambda: g.pointwise_depthwise(150, 8, 12, 5, 8),
    "planar_s2_pad1_odd_c12": lambda: g.pointwise_depthwise(151, 9, 13, 7, 12,
                                                            padding=ir.Padding(1, 1, 1, 1)),
    "planar_s1x2_c6": lambda: g.pointwise_depthwise(152, 5, 11, 4, 6, stride=(1, 2),
                                                    padding=ir.Padding(1, 1, 1, 1)),
    "planar_s2_narrow_c5": lambda: g.pointwise_depthwise(153, 6, 4, 3, 5),
    "planar_s2_pad_beyond_c4": lambda: g.pointwise_depthwise(154, 7, 9, 6, 4,
                                                             padding=ir.Padding(2, 3, 3, 2)),
    "planar_s2_deep_c9": lambda: g.pointwise_depthwise(155, 6, 11, 200, 9),
    "u8_planar_s2_c7": lambda: g.pointwise_depthwise(156, 7, 10, 6, 7,
                                                     legacy_zero_points=(0, -40)),
    "planar_s2_banded_c24": lambda: g.pointwise_depthwise(157, 16, 23, 8, 24,
                                                          padding=ir.Padding(1, 1, 1, 1),
                                                          project=6),
    # At stride 1 across, where a budget leaves the ring out: SAME, the narrowest input, VALID
    # (no border block), padding beyond the window (words shifted by two columns), stride 2
    # down in row bands of two rows.
    "planar_s1_same_c16": lambda: g.pointwise_depthwise(158, 8, 13, 6, 16, stride=(1, 1),
                                                        padding=ir.Padding(1, 1, 1, 1)),
    "planar_s1_narrow_c6": lambda: g.pointwise_depthwise(159, 5, 4, 5, 6, stride=(1, 1),
                                                         padding=ir.Padding(1, 1, 1, 1)),
    "planar_s1_valid_c8": lambda: g.pointwise_depthwise(160, 6, 9, 7, 8, stride=(1, 1),
                                                        padding=ir.Padding(0, 0, 0, 0)),
    "planar_s1_pad_beyond_c5": lambda: g.pointwise_depthwise(161, 6, 7, 4, 5, stride=(1, 1),
                                                             padding=ir.Padding(2, 2, 2, 3)),
    "planar_s2x1_banded_c24": lambda: g.pointwise_depthwise(162, 16, 22, 8, 24,
                                                            stride=(2, 1),
                                                            padding=ir.Padding(1, 1, 1, 1),
                                                            project=6),
    "dw_ring_groups5_c37": lambda: g.depthwise(145, 5, 9, 37),
    "dw_ring_groups6_s2_c48": lambda: g.depthwise(146, 8, 10, 48, stride=(2, 2),
                                                  padding=SAME_S2),
    # Fully connected.
    "fc_1x8_16": lambda: g.fully_connected(50, 1, 8, 16),
    "fc_3x11_17": lambda: g.fully_connected(51, 3, 11, 17),
    "fc_2x16_10_per_tensor": lambda: g.fully_connected(52, 2, 16, 10, per_channel=False),
    "fc_1x250_99": lambda: g.fully_connected(53, 1, 250, 99, activation=ir.Activation.RELU),
    "fc_2x256_10": lambda: g.fully_connected(54, 2, 256, 10),
    # Pooling, softmax.
    "avgpool_7x7_global_c13": lambda: g.average_pool(60, 7, 7, 13, (7, 7), (1, 1), P0),
    "avgpool_3x3_s2_c5": lambda: g.average_pool(61, 6, 7, 5),
    # Helium's int16 sums at their edge: 255 taps (the extremes' -128s sum to -32,640), nine
    # channels (a full vector of eight and one lane); 256 taps take int32 lanes.
    "avgpool_15x17_global_c9_int16": lambda: g.average_pool(62, 15, 17, 9, (15, 17), (1, 1),
                                                            P0),
    "avgpool_16x16_global_c5_int32": lambda: g.average_pool(63, 16, 16, 5, (16, 16), (1, 1),
                                                            P0),
    "mean_5x4_c7": lambda: g.mean(62, 5, 4, 7),
    "mean_one_pixel_c3": lambda: g.mean(63, 1, 1, 3),
    "mean_nchw_last_axis": lambda: g.mean_axes((1, 7, 3, 5), (3,), False, True),
    "mean_3d_last_axis_keep": lambda: g.mean_axes((1, 9, 6), (2,), True),
    "mean_3d_axes_1_2": lambda: g.mean_axes((1, 4, 6), (1, 2), False),
    "mean_nchw_axes_2_3": lambda: g.mean_axes((1, 5, 3, 4), (2, 3), True),
    "softmax_1x10": lambda: g.softmax(64, 1, 10),
    "softmax_3x7": lambda: g.softmax(65, 3, 7),
    # The tabulated exps: every int8 distance counts (no bounds check), or only 31 of them.
    "softmax_2x9_every_distance": lambda: g.softmax(66, 2, 9, scale=0.02),
    "softmax_1x12_short_table": lambda: g.softmax(67, 1, 12, scale=0.5),
    # Elementwise.
    **{f"{kind}_{second}": (lambda kind=kind, second=second:
                            g.elementwise(70, kind, (1, 4, 5, 6), second))
       for kind in ("add", "mul") for second in ("same", "pixel", "constant")},
    "add_relu_c17": lambda: g.elementwise(71, "add", (1, 3, 3, 17), "same",
                                          activation=ir.Activation.RELU),
    # Helium's MUL takes eight lanes a pass: whole passes and a tail of three along the
    # channels (unrolled), flat with a tail, and a clamp narrower than int8.
    "mul_pixel_c19": lambda: g.elementwise(74, "mul", (1, 3, 2, 19), "pixel"),
    "mul_same_relu_c5": lambda: g.elementwise(75, "mul", (1, 3, 3, 5), "same",
                                              activation=ir.Activation.RELU),
    "hard_swish_table": lambda: g.hard_swish(72, (1, 3, 4, 5)),
    "hard_swish_table_odd_size": lambda: g.hard_swish(73, (1, 3, 3, 7)),
    # A uint8 model's ops (held shifted to int8): per-tensor weights with a zero point, so that
    # w - z spans more than int8 (the matrix kernels' input-sum correction, the depthwise
    # kernels' int16 or per-channel offset weights), and uint8's average-pool rounding.
    "u8_pw_11_17": lambda: g.conv(90, 5, 7, 11, 17, (1, 1), padding=P0, legacy_zero_point=29),
    "u8_pw_200_9_odd_pixels": lambda: g.conv(91, 3, 5, 200, 9, (1, 1), padding=P0,
                                             legacy_zero_point=-40),
    "u8_pw_260_5_scratch": lambda: g.conv(101, 1, 3, 260, 5, (1, 1), padding=P0,
                                          legacy_zero_point=33),
    "u8_pw_20_9_one_pass": lambda: g.conv(133, 2, 3, 20, 9, (1, 1), padding=P0,
                                          legacy_zero_point=-17),
    "u8_conv_3x3_s2_same_3_8": lambda: g.conv(92, 10, 10, 3, 8, stride=(2, 2),
                                              padding=SAME_S2, legacy_zero_point=21),
    "u8_conv_3x3_17_6_long_rows": lambda: g.conv(93, 5, 5, 17, 6, legacy_zero_point=-9),
    "u8_dw_3x3_c8": lambda: g.depthwise(94, 6, 6, 8, legacy_zero_point=76),
    "u8_dw_3x3_c11": lambda: g.depthwise(95, 6, 5, 11, legacy_zero_point=-21),
    "u8_dw_3x3_s2_m8_c1": lambda: g.depthwise(96, 9, 9, 1, multiplier=8, stride=(2, 2),
                                              padding=ir.Padding(0, 1, 0, 1),
                                              legacy_zero_point=37),
    "u8_dw_3x3_s2_c7": lambda: g.depthwise(119, 7, 8, 7, stride=(2, 2), padding=SAME_S2,
                                           legacy_zero_point=-60),
    "u8_dw_3x3_wide_c3": lambda: g.depthwise(123, 3, 18, 3, legacy_zero_point=40),
    "u8_dw_blocks_3x3_c8": lambda: g.depthwise(133, 6, 5, 8, legacy_zero_point=-21),
    "u8_fc_3x11_17": lambda: g.fully_connected(97, 3, 11, 17, legacy_zero_point=-34),
    "u8_fc_1x250_99": lambda: g.fully_connected(98, 1, 250, 99, legacy_zero_point=50),
    "u8_avgpool_3x3_s2_c5": lambda: g.average_pool(99, 6, 7, 5, legacy=True),
    "u8_avgpool_2x2_global_c9": lambda: g.average_pool(100, 2, 2, 9, (2, 2), (1, 1), P0,
                                                       legacy=True),
    # Data movement.
    "pad_asymmetric_c3": lambda: g.pad(80, 4, 5, 3),
    "transpose_nchw": lambda: g.transpose(81, (1, 3, 4, 5), (0, 3, 1, 2)),
    "reshape_copy": lambda: g.reshape(82, (1, 2, 3, 5), (1, 30)),
    "concat_columns_c3": lambda: g.concat_columns((1, 4, 5, 3)),
    "slice_columns_c5": lambda: g.slice_columns((1, 4, 9, 5), 3, 4),
    # QUANTIZE and DEQUANTIZE: every conversion, on edge values (conftest.typed_inputs); odd
    # sizes for the word loop's tail; the float side in the arena.
    "quantize_float_int8": lambda: g.quantize((1, 5, 7, 9), "float32", None, "int8",
                                              (0.0237, -7)),
    "quantize_float_uint8": lambda: g.quantize((1, 4, 9, 9), "float32", None, "uint8",
                                               (0.0078125, 128)),
    "quantize_uint8_int8_shift": lambda: g.quantize((1, 5, 7, 9), "uint8", (0.0078125, 128),
                                                    "int8", (0.0078125, 0)),
    "quantize_int8_uint8_shift": lambda: g.quantize((1, 3, 5, 19), "int8", (0.1, -3), "uint8",
                                                    (0.1, 125)),
    "quantize_uint8_int8": lambda: g.quantize((1, 4, 8, 9), "uint8", (0.05, 100), "int8",
                                              (0.031, -5)),
    "quantize_int8_uint8": lambda: g.quantize((1, 4, 8, 9), "int8", (0.05, 3), "uint8",
                                              (0.07, 131)),
    "quantize_int8_int8": lambda: g.quantize((1, 4, 8, 9), "int8", (0.05, 3), "int8",
                                             (0.013, -20)),
    "quantize_int8_int8_wider": lambda: g.quantize((1, 300), "int8", (0.05, 3), "int8",
                                                   (0.5, 7)),
    "dequantize_int8": lambda: g.dequantize((1, 4, 8, 9), "int8", (0.0237, -7)),
    "dequantize_uint8": lambda: g.dequantize((1, 4, 8, 9), "uint8", (0.0411, 131)),
    "dequantize_requantize": lambda: g.dequantize_requantize((1, 5, 7, 9)),
}

# Cases only the DSP cores compute, compiled for the M7 alone (coverage, QEMU): a column
# tile's cached halo (tiles.py), whose slice and depthwise read channel-planar rows: VWW's
# start in small in two tiles, layer by layer.
DSP_CASES = {
    "tiles_cached_halo_c16": lambda: tiles.column_tiles(prepare(g.conv_chain(7, h=10, w=22)),
                                                        4, cached=True),
}

# Cases compiled with an arena budget (--max-ram, bytes): where the DSP depthwise ring's
# scratch does not fit it, its small-scratch variant takes the layer, or at stride 1 after a
# 1x1 convolution the planar pair; the planar pairs in row bands of two rows.
BUDGETS = {"planar_s2_banded_c24": 5120, "planar_s1_same_c16": 2400, "planar_s1_narrow_c6": 256,
           "planar_s1_valid_c8": 672, "planar_s1_pad_beyond_c5": 432,
           "planar_s2x1_banded_c24": 7100,
           "dw_blocks_3x3_c12_odd_width": 512, "dw_blocks_3x3_s2_pad_beyond_c8": 512,
           "dw_blocks_5x5_m2_c8": 512, "dw_blocks_3x3_long_rows_c8": 2048,
           "u8_dw_blocks_3x3_c8": 256, "dw_blocks2_3x3_pad_beyond_c6": 256,
           "dw_blocks2_5x3_s2_c4": 256}

HOST = load_target("host")
M7 = load_target("cortex-m7")
M55 = load_target("cortex-m55")
M3 = load_target("cortex-m3")
M0PLUS = load_target("cortex-m0plus")  # portable C, unaligned word accesses trapping


_compiled: dict[tuple[str, str, str], CompiledModel] = {}


def compile_case(case: str, target, name: str = "model") -> CompiledModel:
    """The case compiled for the target (under its budget, BUDGETS), once per file (the
    coverage test and the QEMU and host tests compile every case for the same targets); in
    a batch of cases (firmware_batch.py), named after the case."""
    key = (case, target.name, name)
    if key not in _compiled:
        build = CASES[case] if case in CASES else DSP_CASES[case]
        _compiled[key] = compile_graph(build(), name=name, target=target,
                                       source=case, max_ram=BUDGETS.get(case))
    return _compiled[key]


def write_sources(compiled: CompiledModel, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for file, text in compiled.sources.items():
        (folder / file).write_text(text)
    return folder


def case_inputs(compiled: CompiledModel) -> np.ndarray:
    graph = compiled.graph
    if graph.input.dtype == "int8":
        return standard_inputs(graph.input.size, seed=3, random_count=2)
    return typed_inputs(graph, seed=3)


def reference_outputs(compiled: CompiledModel, inputs: np.ndarray) -> np.ndarray:
    graph = compiled.graph
    return np.stack([run_reference(graph, x.reshape(graph.input.shape)).reshape(-1)
                     for x in inputs])


def test_every_op_type_has_a_reference_a_quantize_rule_and_a_portable_kernel():
    from mcugen.passes.lookup_table import TABULATED
    from mcugen.passes.quantize import _RULES
    from mcugen.reference import _KERNELS

    portable = {op for v in MCUGEN_VARIANTS if v.isa is Isa.PORTABLE for op in v.ops}
    for op_type in ir.OP_TYPES:
        assert op_type in _RULES, f"{op_type.__name__} has no quantize rule"
        assert op_type in _KERNELS, f"{op_type.__name__} has no reference kernel"
        assert op_type in portable or op_type in TABULATED, \
            f"{op_type.__name__} has no portable kernel and is not tabulated"


def test_the_cases_cover_every_variant():
    # Compiled under the names the host tests (model) and the QEMU batches (the case's) use,
    # so that they compile each case once.
    covered = {layer.variant.name for case in CASES for target in (HOST, M3, M7, M55)
               for layer in compile_case(case, target,
                                         "model" if target is HOST else case).layers}
    covered |= {layer.variant.name for case in DSP_CASES
                for layer in compile_case(case, M7, case).layers}
    assert covered >= {v.name for v in MCUGEN_VARIANTS}


def test_a_budget_without_room_for_the_ring_reads_stride_1_rows_planar():
    # kernels.planar_rows: at stride 1 the pair only where the ring's scratch does not fit,
    # on the M7 (the cases' budgets); without a budget the ring and NHWC rows.
    for case in [c for c in CASES if c.startswith(("planar_s1_", "planar_s2x1_"))]:
        budgeted = [layer.variant.name for layer in compile_case(case, M7, case).layers[:2]]
        assert budgeted == ["pw_conv_s8_planar_dsp", "dw_conv_s8_planar_dsp"], case
        free = compile_graph(CASES[case](), name="m", target=M7, source=case).layers[:2]
        assert [layer.variant.name for layer in free] == \
            ["pw_conv_s8_dsp", "dw_conv_s8_pairs_dsp"], case


def test_a_lowering_must_give_a_frozen_record_with_its_block():
    @dataclasses.dataclass
    class Mutable:
        block_pixels: int = 1

    @dataclasses.dataclass(frozen=True)
    class NoBlock:
        output: int = 0

    with pytest.raises(TypeError, match="not a frozen dataclass"):
        checked_params(Mutable(), "v", raster=False)
    with pytest.raises(TypeError, match="block_pixels >= 1"):
        checked_params(NoBlock(), "v", raster=True)
    record = NoBlock()
    assert checked_params(record, "v", raster=False) is record


@pytest.mark.parametrize("case", sorted(CASES))
def test_portable_c_on_the_host_is_bit_exact(case, tmp_path):
    compiled = compile_case(case, HOST)
    assert all(layer.variant.isa is Isa.PORTABLE for layer in compiled.layers)
    graph = compiled.graph
    model = build_shared(write_sources(compiled, tmp_path / "model"), "model", graph.input.size,
                         graph.output.size, tmp_path, input_dtype=graph.input.dtype,
                         output_dtype=graph.output.dtype)
    inputs = case_inputs(compiled)
    np.testing.assert_array_equal(np.stack([model(x) for x in inputs]),
                                  reference_outputs(compiled, inputs))


@pytest.mark.slow
def test_every_case_is_clean_under_sanitizers(tmp_path):
    def one(case: str) -> None:
        compiled = compile_case(case, HOST)
        work = tmp_path / case
        inputs = case_inputs(compiled)
        outputs = run_sanitized(write_sources(compiled, work / "model"), "model",
                                compiled.graph.input.size, compiled.graph.output.size, inputs,
                                work, output_dtype=compiled.graph.output.dtype)
        np.testing.assert_array_equal(outputs, reference_outputs(compiled, inputs),
                                      err_msg=case)

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        list(pool.map(one, sorted(CASES)))


def run_in_qemu(target, tmp_path: Path) -> dict[str, set[str]]:
    """Every case on the target's board, all in one firmware (firmware_batch.py); returns
    the variants that ran, per case."""
    cases = sorted(CASES) + (sorted(DSP_CASES) if target is M7 else [])
    compiled = {case: compile_case(case, target, name=case) for case in cases}
    inputs = {case: case_inputs(model) for case, model in compiled.items()}
    runs = run_batch(compiled, inputs, target, tmp_path)
    for case, model in compiled.items():
        np.testing.assert_array_equal(runs[case].outputs,
                                      reference_outputs(model, inputs[case]),
                                      err_msg=f"{case} on {target.name}")
    return {case: {layer.variant.name for layer in model.layers}
            for case, model in compiled.items()}


@pytest.mark.qemu
def test_portable_variants_are_bit_exact_in_qemu_on_armv6m(tmp_path):
    ran = run_in_qemu(M0PLUS, tmp_path)
    assert not any(name.endswith(("_dsp", "_armv7m", "_mve"))
                   for names in ran.values() for name in names)


@pytest.mark.qemu
def test_armv7m_variants_are_bit_exact_in_qemu(tmp_path):
    ran = run_in_qemu(M3, tmp_path)
    assert all(ran[case] == {"pw_conv_s8_armv7m"} for case in ran if case.startswith("pw_"))
    assert all(ran[case] == {"fc_s8_armv7m"} for case in ran if case.startswith("fc_"))


@pytest.mark.qemu
def test_dsp_and_armv7m_variants_are_bit_exact_in_qemu(tmp_path):
    ran = run_in_qemu(M7, tmp_path)
    used = set().union(*ran.values())
    assert {"pw_conv_s8_dsp", "conv_s8_dsp", "dw_conv_s8_dsp", "fc_s8_dsp"} <= used
    # No cliffs: every pointwise and fully connected shape takes the DSP kernel.
    assert all(ran[case] == {"pw_conv_s8_dsp"} for case in ran if case.startswith("pw_"))
    assert all(ran[case] == {"fc_s8_dsp"} for case in ran if case.startswith("fc_"))


@pytest.mark.qemu
def test_mve_variants_are_bit_exact_in_qemu(tmp_path):
    ran = run_in_qemu(M55, tmp_path)
    used = set().union(*ran.values())
    assert {v.name for v in MCUGEN_VARIANTS if v.isa is Isa.MVE} <= used
    # Every shape of the cases goes through Helium: channel counts that are not multiples of
    # 16 or 4, odd pixel counts, depth multipliers, one-pixel maps.
    portable_only = {"softmax_s8", "pad_s8", "transpose_s8", "copy_s8", "concat_columns_s8",
                     "slice_columns_s8",
                     "quantize_float", "requantize_shift", "requantize_table", "dequantize_float", "mean_axes_s8"}
    assert all(name.endswith("_mve") or name in portable_only
               for case, names in ran.items() if not case.startswith(("u8_avgpool", "u8_fc"))
               for name in names), ran


def planar_lanes(params: DepthwisePlanarParams) -> np.ndarray:
    """The doubled weight lanes of a planar depthwise's records (int16)."""
    words = params.channels.values.reshape(-1, params.channel_words)[:, CHANNEL_HEADER:]
    return words.astype(np.int32).view(np.int16)


def test_uint8_cases_take_the_fast_variants_and_their_weight_offsets():
    """A uint8 model's layers are not a slow side path: on M7 and M55 they take the DSP and
    Helium kernels, with weights int8 cannot hold (the cases' extremes) handled exactly. (Its
    FULLY_CONNECTED rounds once, in portable C: a classifier, a small share of a MobileNet.)"""
    for case in (c for c in CASES if c.startswith("u8_") and "avgpool" not in c
                 and "fc" not in c):
        for target, suffix in ((M7, "_dsp"), (M55, "_mve")):
            layer = compile_case(case, target).layers[-1]
            assert layer.variant.name.endswith(suffix), (case, target.name, layer.variant.name)
        params = compile_case(case, M7).layers[-1].params
        wide = getattr(params, "prepacked", None) is not None or (
            isinstance(params, DepthwisePairsParams)
            and int(np.abs(record_lanes(params)).max()) > 2 * 128) or (  # doubled w - z
            isinstance(params, DepthwisePlanarParams)
            and int(np.abs(planar_lanes(params)).max()) > 2 * 128)
        offset = getattr(getattr(params, "matrix", params), "offset", 0)
        assert wide or offset, case


def test_a_uint8_fully_connected_rounds_once():
    compiled = compile_case("u8_fc_3x11_17", M7)
    assert compiled.layers[0].variant.name == "fc_s8"
    assert compiled.layers[0].params.out.function == "requantize_single"


def test_a_uint8_average_pool_rounds_half_up():
    """uint8 AVERAGE_POOL_2D rounds (sum + n/2) / n of the uint8 values: for values held
    shifted, a negative half rounds up where int8's rule rounds away from zero."""
    from mcugen.reference import op_kernel
    compiled = compile_case("u8_avgpool_2x2_global_c9", HOST)
    op = compiled.graph.ops[0]
    x = np.array([-3, -4, -4, -4], np.int8).reshape(1, 2, 2, 1).repeat(9, axis=3)
    value = op_kernel(op)(op, compiled.graph, x)  # sum -15, n 4: -3.75 -> -4 either way
    assert int(value.reshape(-1)[0]) == -4
    x = np.array([-3, -3, -4, -4], np.int8).reshape(1, 2, 2, 1).repeat(9, axis=3)
    value = op_kernel(op)(op, compiled.graph, x)  # sum -14: -3.5 -> -3 (int8 gives -4)
    assert int(value.reshape(-1)[0]) == -3


def test_generated_c_is_specialised_to_its_instruction_set():
    host = compile_case("dw_3x3_c8", HOST).sources["model.c"]
    m7 = compile_case("dw_3x3_c8", M7).sources["model.c"]
    assert "__sxtb16" not in host and "#error" not in host
    assert "__sxtb16" in m7 and "__ARM_FEATURE_DSP" in m7 and "#error" in m7


def test_the_reference_of_a_case_is_not_trivial():
    """Each case's outputs depend on its input (a constant output would prove nothing)."""
    for case in CASES:
        compiled = compile_case(case, HOST)
        outputs = reference_outputs(compiled, case_inputs(compiled))
        assert len({row.tobytes() for row in outputs}) >= 2, case


def test_prepare_keeps_the_hand_built_graphs_valid():
    for case in CASES:
        ir.verify(prepare(CASES[case]()))


@pytest.mark.qemu
def test_softmax_reads_its_exps_from_a_table(tmp_path):
    """The softmax's exps are tabulated at generation time (an int8 element's distance to its
    row's maximum has 256 values): a row of 10 takes under 1,200 instructions on Cortex-M55
    (about 4,600 when each exp was evaluated twice at run time), bit-exact, with a table
    covering every distance, a shorter one, and one that stops at diff_min."""
    for case, most in (("softmax_1x10", 1200), ("softmax_2x9_every_distance", 2 * 1000),
                       ("softmax_1x12_short_table", 1300)):
        compiled = compile_case(case, M55)
        work = tmp_path / case
        elf = build_firmware(write_sources(compiled, work / "model"), M55, work / "firmware")
        inputs = case_inputs(compiled)
        result = run_firmware(elf, M55, inputs, compiled.graph.output.size)
        np.testing.assert_array_equal(result.outputs, reference_outputs(compiled, inputs))
        assert max(result.instructions) < most, (case, result.instructions)
