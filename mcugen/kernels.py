"""Kernel selection: which C kernel runs each op, and what that kernel's access order allows.

A kernel is chosen per op from what the op is (its geometry) and from the target's features,
never from a target's name. The choice fixes what later stages need: the template that renders
the layer, whether the kernel streams (writes its output in order while it reads its input in
order), which lets the memory planner put the output over the input, and, for Arm's CMSIS-NN
(``kernel_set="cmsis-nn"``), which ``arm_*_s8`` function runs and how much scratch it needs.

CMSIS-NN picks its code path (pure C, DSP, Helium/MVE) at compile time from the compiler's
feature macros; the scratch sizes below follow its ``*_get_buffer_size`` functions for the path
the target's features select (read at CMSIS-NN commit 99f736a6, v7.0.0+).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import McugenError
from .ir import (Add, AveragePool2D, Conv2D, DepthwiseConv2D, FullyConnected, Graph, Mean, Mul,
                 Op, Pad, Reshape, Softmax, TableLookup, Transpose)
from .targets import Target

KERNEL_SETS = ("mcugen", "cmsis-nn")


@dataclass(frozen=True)
class Kernel:
    name: str  # also the template: templates/kernels/<name>.c.j2
    streams: bool  # output pixel p is written after the input of pixels < p is last read
    block_pixels: int = 1  # pixels computed together: their outputs interleave with reads
    library_function: str | None = None  # the CMSIS-NN function the layer calls, if any
    scratch_bytes: int = 0  # arena scratch the library function needs while the layer runs
    kernel_sums: bool = False  # MVE fully connected: the context buffer holds the kernel sums
    table_padding: int = 0  # zero elements appended to per-channel tables and DW weights
    filter_row_multiple: int = 1  # conv filter rows (KH*KW*Cin) zero-padded to a multiple
    filter_in_sxtb16_order: bool = False  # each 4 filter bytes stored as w0, w2, w1, w3


@dataclass(frozen=True)
class CmsisPath:
    """The CMSIS-NN code path a target's compiler selects: MVE wins over DSP when both exist."""

    dsp: bool
    mve: bool

    @property
    def label(self) -> str:
        return "MVE" if self.mve else "DSP" if self.dsp else "pure C"


def cmsis_path(target: Target) -> CmsisPath:
    return CmsisPath(dsp="dsp" in target.features, mve="mve" in target.features)


POINTWISE = Kernel("pw_conv_s8", streams=True, block_pixels=2)  # 1x1, stride 1, no padding
FULLY_CONNECTED = Kernel("pw_conv_s8", streams=False)  # one "pixel" per row of the input
# A general convolution gathers each output pixel's window into an int16 column in arena
# scratch (im2col: input offset applied, padding taps 0), then takes dot products with the
# filter rows, four int8s at a time: rows are padded to a multiple of 4, and each group of four
# is stored as w0, w2, w1, w3, so that SXTB16 (which takes bytes 0 and 2, or 1 and 3 after a
# rotate) yields the pairs (w0, w1) and (w2, w3) that match the column's int16 pairs.
CONV_ROW_MULTIPLE = 4
DEPTHWISE = Kernel("dw_conv_s8", streams=True)
PAD = Kernel("pad_s8", streams=True)
AVERAGE_POOL = Kernel("avgpool_s8", streams=False)
MEAN = Kernel("mean_s8", streams=False)
SOFTMAX = Kernel("softmax_s8", streams=False)
COPY = Kernel("copy_s8", streams=False)  # a RESHAPE that could not be elided
# Elementwise kernels read element i of their inputs before they write element i of the
# output, so the output may take the place of an input of its own shape (distance 0).
ADD = Kernel("add_s8", streams=True)
MUL = Kernel("mul_s8", streams=True)
LOOKUP = Kernel("lookup_s8", streams=True)
TRANSPOSE = Kernel("transpose_s8", streams=False)
ELEMENTWISE_KERNELS = frozenset({"add_s8", "mul_s8", "lookup_s8"})


def conv_kernel(op: Conv2D, graph: Graph) -> Kernel:
    _, kh, kw, in_c = graph.tensor(op.filter).shape
    row = -(-kh * kw * in_c // CONV_ROW_MULTIPLE) * CONV_ROW_MULTIPLE
    # Two pixels at a time (two columns), which share each filter load.
    return Kernel("conv_s8", streams=True, block_pixels=2, scratch_bytes=2 * 2 * row,
                  filter_row_multiple=CONV_ROW_MULTIPLE, filter_in_sxtb16_order=True)


def is_pointwise(op: Conv2D, graph: Graph) -> bool:
    kh, kw = graph.tensor(op.filter).shape[1:3]
    return (kh, kw) == (1, 1) and op.stride == (1, 1) and op.padding.is_zero


def select_kernel(op: Op, graph: Graph, target: Target, kernel_set: str = "mcugen") -> Kernel:
    if kernel_set == "cmsis-nn":
        kernel = select_cmsis_kernel(op, graph, cmsis_path(target))
        if kernel is not None:
            return kernel
    elif kernel_set != "mcugen":
        raise McugenError(f"unknown kernel set {kernel_set!r}; choose one of "
                          f"{', '.join(KERNEL_SETS)}")
    return select_mcugen_kernel(op, graph)


def select_mcugen_kernel(op: Op, graph: Graph) -> Kernel:
    if isinstance(op, Conv2D):
        return POINTWISE if is_pointwise(op, graph) else conv_kernel(op, graph)
    if isinstance(op, FullyConnected):
        return FULLY_CONNECTED
    simple = {DepthwiseConv2D: DEPTHWISE, Pad: PAD, AveragePool2D: AVERAGE_POOL, Mean: MEAN,
              Softmax: SOFTMAX, Reshape: COPY, Add: ADD, Mul: MUL, TableLookup: LOOKUP,
              Transpose: TRANSPOSE}
    if type(op) in simple:
        return simple[type(op)]
    raise McugenError(f"no kernel for {op.OP}")


# ---------------------------------------------------------------------------------------------
# CMSIS-NN. Its kernels read and write in their own orders (im2col, channel blocks), so none
# streams: the planner never puts their output over their input.

# On MVE, depthwise kernels read up to 3 elements past the end of the per-channel tables and
# the weights; every per-channel table of a CMSIS-NN layer gets this many zeros appended there.
MVE_OVER_READ = 4
# arm_softmax_s8 shifts a 32-bit value right by 12 - clz(sum of exps) + 23, which exceeds 31
# (undefined in C) once the sum of exps (up to row_size * 2^19) reaches 2^28; ours shifts in
# 64 bits. Below this row size the two are the same function.
CMSIS_SOFTMAX_MAX_ROW = 511


def _cmsis_kernel(template: str, function: str, **details) -> Kernel:
    return Kernel(template, streams=False, library_function=function, **details)


def select_cmsis_kernel(op: Op, graph: Graph, path: CmsisPath) -> Kernel | None:
    """The CMSIS-NN kernel for op on this path, or None where ours stays (MEAN, PAD, copies,
    long softmax rows)."""
    padding = MVE_OVER_READ if path.mve else 0
    if isinstance(op, Conv2D):
        _, kh, kw, in_c = graph.tensor(op.filter).shape
        if is_pointwise(op, graph):
            # No scratch with gcc on any path (armclang's optional DSP buffer stays unused).
            return _cmsis_kernel("cmsis_conv_s8", "arm_convolve_1x1_s8_fast",
                                 table_padding=padding)
        return _cmsis_kernel("cmsis_conv_s8", "arm_convolve_s8",
                             scratch_bytes=convolve_s8_scratch_bytes(in_c, kh, kw, path),
                             table_padding=padding)
    if isinstance(op, DepthwiseConv2D):
        return _cmsis_depthwise(op, graph, path)
    if isinstance(op, FullyConnected):
        per_channel = len(op.requant.multiplier) > 1
        function = "arm_fully_connected_per_channel_s8" if per_channel else "arm_fully_connected_s8"
        # The MVE kernel starts from precomputed kernel sums (bias included), 4 B per output:
        # they are constants, so they go to flash instead of arena scratch.
        return _cmsis_kernel("cmsis_fc_s8", function, kernel_sums=path.mve,
                             table_padding=padding)
    if isinstance(op, AveragePool2D):
        channels = graph.tensor(op.input).shape[3]
        return _cmsis_kernel("cmsis_avgpool_s8", "arm_avgpool_s8",
                             scratch_bytes=avgpool_s8_scratch_bytes(channels, path))
    if isinstance(op, Softmax) and graph.tensor(op.output).shape[-1] <= CMSIS_SOFTMAX_MAX_ROW:
        return _cmsis_kernel("cmsis_softmax_s8", "arm_softmax_s8")
    if isinstance(op, Add) and _same_shapes(op, graph):
        return _cmsis_kernel("cmsis_add_s8", "arm_elementwise_add_s8")
    if isinstance(op, Mul) and (_same_shapes(op, graph) or _broadcast_over_pixels(op, graph)):
        return _cmsis_kernel("cmsis_mul_s8", "arm_elementwise_mul_s8")
    return None


def _same_shapes(op: Add | Mul, graph: Graph) -> bool:
    """CMSIS-NN's elementwise kernels take two vectors of one length: no broadcasting."""
    shape = graph.tensor(op.output).shape
    return graph.tensor(op.input).shape == graph.tensor(op.input2).shape == shape


def _broadcast_over_pixels(op: Mul, graph: Graph) -> bool:
    """[1,H,W,C] x [1,1,1,C] (squeeze-and-excitation): one CMSIS-NN call per pixel."""
    out = graph.tensor(op.output).shape
    second = graph.tensor(op.input2).shape
    return (len(out) == 4 and graph.tensor(op.input).shape == out
            and second in ((1, 1, 1, out[3]), (out[3],)))


def _cmsis_depthwise(op: DepthwiseConv2D, graph: Graph, path: CmsisPath) -> Kernel:
    """What arm_depthwise_conv_wrapper_s8 would run, called directly. (The MVE wrapper's
    one-input-channel conversion to a convolution is skipped: that case has ch_mult > 1 and
    runs the generic kernel, which needs no scratch.)"""
    _, kh, kw, channels = graph.tensor(op.filter).shape
    padding = MVE_OVER_READ if path.mve else 0
    if op.depth_multiplier != 1 or op.dilation != (1, 1):
        return _cmsis_kernel("cmsis_dw_conv_s8", "arm_depthwise_conv_s8",
                             table_padding=padding)
    if not path.mve and (kh, kw) == (3, 3) and op.padding.top <= 1 and op.padding.left <= 1:
        return _cmsis_kernel("cmsis_dw_conv_s8", "arm_depthwise_conv_3x3_s8")
    return _cmsis_kernel("cmsis_dw_conv_s8", "arm_depthwise_conv_s8_opt",
                         scratch_bytes=depthwise_conv_s8_opt_scratch_bytes(channels, kh, kw, path),
                         table_padding=padding)


def convolve_s8_scratch_bytes(in_c: int, kh: int, kw: int, path: CmsisPath) -> int:
    """arm_convolve_s8_get_buffer_size: MVE im2col holds 4 columns rounded up to 16 bytes;
    the others 2 columns of int16 rounded up to 4 elements."""
    columns = in_c * kh * kw
    if path.mve:
        return 4 * 16 * -(-columns // 16)
    return 2 * 2 * -(-columns // 4) * 4


def depthwise_conv_s8_opt_scratch_bytes(channels: int, kh: int, kw: int,
                                        path: CmsisPath) -> int:
    """arm_depthwise_conv_s8_opt_get_buffer_size (pure C forwards to the generic kernel)."""
    if path.mve:
        return 4 * 124 * kh * kw  # 4 x CH_IN_BLOCK_MVE
    if path.dsp:
        return 2 * channels * kh * kw
    return 0


def avgpool_s8_scratch_bytes(channels: int, path: CmsisPath) -> int:
    """arm_avgpool_s8_get_buffer_size: one int32 sum per channel on DSP only."""
    return 4 * channels if path.dsp and not path.mve else 0


def scratch_id(index: int) -> str:
    """The planner's id for layer index's scratch buffer (no tensor is named like this)."""
    return f"<scratch of layer {index}>"


def streaming_order(op: Op, graph: Graph, block_pixels: int = 1
                    ) -> tuple[np.ndarray, np.ndarray]:
    """For a streaming kernel, per output pixel p: the end of the output bytes written up to p,
    and the first input byte read by pixel p's window (see planner.streaming_distance)."""
    _, in_h, in_w, in_c = graph.tensor(op.input).shape
    _, out_h, out_w, out_c = graph.tensor(op.output).shape
    oy, ox = np.divmod(np.arange(out_h * out_w, dtype=np.int64), out_w)
    if isinstance(op, Pad):
        stride, top, left = (1, 1), -op.padding.top, -op.padding.left
    else:  # a convolution, which may read before its first row/column when padded
        stride, top, left = op.stride, op.padding.top, op.padding.left
    first_row = np.clip(oy * stride[0] - top, 0, in_h - 1)
    first_col = np.clip(ox * stride[1] - left, 0, in_w - 1)
    if isinstance(op, Pad):  # a padding pixel reads nothing: its next read is the next real one
        first_row = np.clip(oy - op.padding.top, 0, in_h - 1)
        first_col = np.where(oy < op.padding.top, 0, first_col)
    first_read = (first_row * in_w + first_col) * in_c
    # Kernels read pixel p's input while they write pixel p, so the reads still to come when
    # pixel p is written begin at the lowest first read of pixel p and every later pixel.
    next_read = np.minimum.accumulate(first_read[::-1])[::-1]
    # A kernel that computes a block of pixels together may write any of them while it still
    # reads the first pixel of the block.
    block_start = np.arange(out_h * out_w) // block_pixels * block_pixels
    next_read = next_read[block_start]
    write_end = (np.arange(1, out_h * out_w + 1, dtype=np.int64)) * out_c
    return write_end, next_read
