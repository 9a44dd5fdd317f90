"""Kernel selection: which C kernel runs each op, and what that kernel's access order allows.

A kernel is chosen per op from what the op is (its geometry), never from a target's name. The
choice fixes two things later stages need: the template that renders the layer, and whether
the kernel streams (writes its output in order while it reads its input in order), which lets
the memory planner put the output over the input.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import McugenError
from .ir import (AveragePool2D, Conv2D, DepthwiseConv2D, FullyConnected, Graph, Mean, Op, Pad,
                 Reshape, Softmax)


@dataclass(frozen=True)
class Kernel:
    name: str  # also the template: templates/kernels/<name>.c.j2
    streams: bool  # output pixel p is written after the input of pixels < p is last read


POINTWISE = Kernel("pw_conv_s8", streams=True)  # 1x1, stride 1, no padding
FULLY_CONNECTED = Kernel("pw_conv_s8", streams=False)  # one "pixel" per row of the input
CONV = Kernel("conv_s8", streams=True)
DEPTHWISE = Kernel("dw_conv_s8", streams=True)
PAD = Kernel("pad_s8", streams=True)
AVERAGE_POOL = Kernel("avgpool_s8", streams=False)
MEAN = Kernel("mean_s8", streams=False)
SOFTMAX = Kernel("softmax_s8", streams=False)
COPY = Kernel("copy_s8", streams=False)  # a RESHAPE that could not be elided


def is_pointwise(op: Conv2D, graph: Graph) -> bool:
    kh, kw = graph.tensor(op.filter).shape[1:3]
    return (kh, kw) == (1, 1) and op.stride == (1, 1) and op.padding.is_zero


def select_kernel(op: Op, graph: Graph) -> Kernel:
    if isinstance(op, Conv2D):
        return POINTWISE if is_pointwise(op, graph) else CONV
    if isinstance(op, FullyConnected):
        return FULLY_CONNECTED
    simple = {DepthwiseConv2D: DEPTHWISE, Pad: PAD, AveragePool2D: AVERAGE_POOL, Mean: MEAN,
              Softmax: SOFTMAX, Reshape: COPY}
    if type(op) in simple:
        return simple[type(op)]
    raise McugenError(f"no kernel for {op.OP}")


def streaming_order(op: Op, graph: Graph) -> tuple[np.ndarray, np.ndarray]:
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
    write_end = (np.arange(1, out_h * out_w + 1, dtype=np.int64)) * out_c
    return write_end, next_read
