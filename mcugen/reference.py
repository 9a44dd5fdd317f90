"""The IR's executable semantics: a NumPy interpreter, bit-exact with TFLM's reference kernels.

One function per op, written to read like ``tensorflow/lite/kernels/internal/reference``:
widen to int32 (here int64, which gives the same values wherever TFLM's int32 does not
overflow), subtract the input zero point, multiply-accumulate, add the bias, requantize
(``quant.multiply_by_quantized_multiplier``), add the output zero point, clamp to the
activation range. Loops over pixels and channels are NumPy array operations instead.

It uses the constants ``passes.quantize.quantize_constants`` stored on the ops, so that what
is tested here is exactly what code generation emits.
"""

from __future__ import annotations

import dataclasses

from typing import Callable

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from . import ir, quant
from .errors import McugenError


def run_reference(graph: ir.Graph, input: np.ndarray, keep_all: bool = False
                  ) -> np.ndarray | dict[str, np.ndarray]:
    """Run ``graph`` on one input shaped like ``graph.input``, of its type (int8; uint8 or
    float32 for a model that starts with QUANTIZE).

    Returns the output shaped like ``graph.output`` (of its type) or, with ``keep_all``, a
    dict from tensor name to value for every tensor (the input, every op's output and the
    constants).
    """
    expected = graph.input
    if input.dtype != np.dtype(expected.dtype) or tuple(input.shape) != expected.shape:
        raise McugenError(f"input must be {expected.dtype} {expected.shape}, got {input.dtype} "
                          f"{tuple(input.shape)}")
    constants = {n: t.data for n, t in graph.tensors.items() if t.is_constant}
    values: dict[str, np.ndarray] = {**constants, expected.name: input}
    for index, op in enumerate(graph.ops):
        kernel = op_kernel(op, index)
        out = graph.tensor(op.output)
        operands = [values[op.input]] + ([values[op.input2]] if hasattr(op, "input2") else []) \
            + ([values[op.halo]] if getattr(op, "halo", None) is not None else [])
        result = kernel(op, graph, *operands)
        values[out.name] = result.astype(out.dtype).reshape(out.shape)
    return values if keep_all else values[graph.output.name]


def op_kernel(op: ir.Op, index: int = 0) -> Callable[..., np.ndarray]:
    """The reference kernel of ``op``: ``kernel(op, graph, input[, input2 or halo]) ->
    output``."""
    kernel = _KERNELS.get(type(op))
    if kernel is None:
        raise McugenError(f"op {index} ({op.OP}): the reference interpreter has no kernel")
    _require_quantized(op, index)
    return kernel


def _require_quantized(op: ir.Op, index: int) -> None:
    derived = _DERIVED_FIELDS.get(type(op), ())
    if any(getattr(op, field) is None for field in derived):
        raise McugenError(f"op {index} ({op.OP}) has no quantization constants: "
                          "run passes.quantize.quantize_constants first")


# What passes.quantize fills in, per op type (a RELU6 needs no multiplier).
_DERIVED_FIELDS: dict[type, tuple[str, ...]] = {
    ir.Conv2D: ("requant", "act_min"),
    ir.DepthwiseConv2D: ("requant", "act_min"),
    ir.FullyConnected: ("requant", "act_min"),
    ir.AveragePool2D: ("act_min",),
    ir.Mean: ("requant",),
    ir.Softmax: ("input_multiplier",),
    ir.Add: ("rescale", "act_min"),
    ir.Mul: ("requant", "act_min"),
    ir.Relu: ("act_min",),
}


# ---------------------------------------------------------------------------------------------
# Shared steps


def _requantize(acc: np.ndarray, requant: ir.Requant, output_zero_point: int,
                act_min: int, act_max: int) -> np.ndarray:
    """Requantize int32 accumulators (per-channel constants on the last axis), add the
    output zero point, clamp to the activation range: TFLM's order."""
    scaled = quant.multiply_by_quantized_multiplier(
        acc, np.array(requant.multiplier), np.array(requant.shift)).astype(np.int64)
    return np.clip(scaled + output_zero_point, act_min, act_max)


def _windows(x: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int],
             dilation: tuple[int, int], padding: ir.Padding, pad_value: int,
             out_hw: tuple[int, int]) -> np.ndarray:
    """Every receptive field of an HWC image: [OH, OW, KH, KW, C].

    Padding with the input zero point stands for TFLM's skipping of out-of-image taps: such a
    tap contributes (zp - zp) * w = 0 either way.
    """
    # A negative padding crops (a column tile reading part of a whole image: tiles.py).
    x = x[max(-padding.top, 0):x.shape[0] - max(-padding.bottom, 0),
          max(-padding.left, 0):x.shape[1] - max(-padding.right, 0)]
    padded = np.pad(x, ((max(padding.top, 0), max(padding.bottom, 0)),
                        (max(padding.left, 0), max(padding.right, 0)), (0, 0)),
                    constant_values=pad_value)
    span = tuple((k - 1) * d + 1 for k, d in zip(kernel, dilation))
    views = sliding_window_view(padded, span, axis=(0, 1))  # [H', W', C, spanH, spanW]
    views = views[::stride[0], ::stride[1], :, ::dilation[0], ::dilation[1]]
    return views[:out_hw[0], :out_hw[1]].transpose(0, 1, 3, 4, 2)


def _weights(graph: ir.Graph, name: str) -> np.ndarray:
    """A filter's integer values minus its zero point: TFLite's int8 kernels take symmetric
    weights (zero point 0); its uint8 kernels add ``filter_offset = -zero_point`` to every
    weight (per-tensor), which this is."""
    tensor = graph.tensor(name)
    values = tensor.data.astype(np.int64)
    if tensor.q is not None and not tensor.q.per_channel:
        values = values - tensor.zero_point
    return values


def _bias(graph: ir.Graph, name: str | None, channels: int) -> np.ndarray:
    if name is None:
        return np.zeros(channels, dtype=np.int64)
    return graph.tensor(name).data.astype(np.int64)


# ---------------------------------------------------------------------------------------------
# Kernels: (op, graph, input value) -> output value


def conv2d(op: ir.Conv2D, graph: ir.Graph, x: np.ndarray) -> np.ndarray:
    """reference_integer_ops::ConvPerChannel (reference_ops::Conv with a filter offset for a
    uint8 model)."""
    x_t, y_t = graph.tensor(op.input), graph.tensor(op.output)
    weights = _weights(graph, op.filter)  # [Cout, KH, KW, Cin]
    cout, kh, kw, cin = weights.shape
    windows = _windows(x[0], (kh, kw), op.stride, op.dilation, op.padding, x_t.zero_point,
                       y_t.shape[1:3])
    inputs = windows.astype(np.int64) - x_t.zero_point
    acc = inputs.reshape(*windows.shape[:2], -1) @ weights.reshape(cout, -1).T
    acc += _bias(graph, op.bias, cout)
    return _requantize(acc, op.requant, y_t.zero_point, op.act_min, op.act_max)[None]


def depthwise_conv2d(op: ir.DepthwiseConv2D, graph: ir.Graph, x: np.ndarray,
                     halo: np.ndarray | None = None) -> np.ndarray:
    """reference_integer_ops::DepthwiseConvPerChannel: output channel ``c * multiplier + m``
    reads input channel ``c``. A column tile's halo (ir.DepthwiseConv2D.halo) is the left
    padding's columns: the image continued, not the zero point."""
    x_t, y_t = graph.tensor(op.input), graph.tensor(op.output)
    weights = _weights(graph, op.filter)[0]  # [KH, KW, Cout]
    kh, kw, cout = weights.shape
    padding = op.padding
    if halo is not None:
        x = np.concatenate([halo, x], axis=2)
        padding = dataclasses.replace(padding, left=0)
    windows = _windows(x[0], (kh, kw), op.stride, op.dilation, padding, x_t.zero_point,
                       y_t.shape[1:3])
    inputs = np.repeat(windows.astype(np.int64) - x_t.zero_point, op.depth_multiplier, axis=-1)
    acc = np.einsum("yxhwc,hwc->yxc", inputs, weights)
    acc += _bias(graph, op.bias, cout)
    return _requantize(acc, op.requant, y_t.zero_point, op.act_min, op.act_max)[None]


def pad(op: ir.Pad, graph: ir.Graph, x: np.ndarray) -> np.ndarray:
    """reference_ops::Pad: values copied unchanged, the border filled with the output's zero
    point."""
    p = op.padding
    return np.pad(x, ((0, 0), (p.top, p.bottom), (p.left, p.right), (0, 0)),
                  constant_values=graph.tensor(op.output).zero_point)


def average_pool2d(op: ir.AveragePool2D, graph: ir.Graph, x: np.ndarray) -> np.ndarray:
    """reference_integer_ops::AveragePool: the sum of the in-image taps of raw int8 values
    (no zero point: input and output share it), divided by their count rounding half away
    from zero, clamped. Padding taps are neither summed nor counted. A uint8 model's
    (reference_ops::AveragePool on uint8) rounds half up instead."""
    out_hw = graph.tensor(op.output).shape[1:3]

    def window_sums(image: np.ndarray) -> np.ndarray:
        windows = _windows(image, op.filter_size, op.stride, (1, 1), op.padding, 0, out_hw)
        return windows.sum(axis=(2, 3))

    total = window_sums(x[0].astype(np.int64))
    count = window_sums(np.ones(x.shape[1:3] + (1,), dtype=np.int64))  # in-image taps
    if op.legacy:
        average = quant.rounded_average_half_up(total, count)
    else:
        average = quant.rounded_average(total, count)
    return np.clip(average, op.act_min, op.act_max)[None]


def mean(op: ir.Mean, graph: ir.Graph, x: np.ndarray) -> np.ndarray:
    """reference_ops::QuantizedMeanOrSum over op.axes (TFLM's int8 MEAN whatever the axes and
    qparams, equal ones included, as the tflite-micro runtime computes it): the int32 sum
    minus zp_in * N, requantized by the in/out multiplier with 1/N folded in
    (quant.mean_multiplier), plus zp_out, clamped to int8."""
    x_t, y_t = graph.tensor(op.input), graph.tensor(op.output)
    count = int(np.prod([x.shape[axis] for axis in op.axes]))
    total = x.astype(np.int64).sum(axis=op.axes)
    multiplier, shift = quant.mean_multiplier(op.requant.multiplier[0], op.requant.shift[0],
                                              count)
    scaled = quant.multiply_by_quantized_multiplier(total - x_t.zero_point * count,
                                                    multiplier, shift).astype(np.int64)
    return np.clip(scaled + y_t.zero_point, quant.INT8_MIN, quant.INT8_MAX)


def fully_connected(op: ir.FullyConnected, graph: ir.Graph, x: np.ndarray) -> np.ndarray:
    """reference_integer_ops::FullyConnected (per tensor) / FullyConnectedPerChannel; for a
    uint8 model, TensorFlow Lite's uint8 kernel: a filter offset and one rounding."""
    x_t, y_t = graph.tensor(op.input), graph.tensor(op.output)
    weights = _weights(graph, op.weights)  # [outputs, depth]
    inputs = x.astype(np.int64).reshape(-1, weights.shape[1]) - x_t.zero_point
    acc = inputs @ weights.T + _bias(graph, op.bias, weights.shape[0])
    if op.legacy:  # TensorFlow Lite's uint8 kernel rounds once
        scaled = quant.multiply_by_quantized_multiplier_single(
            acc, op.requant.multiplier[0], op.requant.shift[0]).astype(np.int64)
        return np.clip(scaled + y_t.zero_point, op.act_min, op.act_max)
    return _requantize(acc, op.requant, y_t.zero_point, op.act_min, op.act_max)


def reshape(op: ir.Reshape, graph: ir.Graph, x: np.ndarray) -> np.ndarray:
    return x


def softmax(op: ir.Softmax, graph: ir.Graph, x: np.ndarray) -> np.ndarray:
    """reference_ops::Softmax, int8 to int8, over the last axis (quant.softmax_int8)."""
    return quant.softmax_int8(x, op.input_multiplier, op.input_left_shift, op.diff_min)


def _broadcast_operands(x1: np.ndarray, x2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both operands as int64 in the output's shape (BroadcastAdd4DSlow/BroadcastMul4DSlow
    visit every output element and read the broadcast operand's matching element)."""
    a, b = np.broadcast_arrays(x1.astype(np.int64), x2.astype(np.int64))
    return a, b


def add(op: ir.Add, graph: ir.Graph, x1: np.ndarray, x2: np.ndarray) -> np.ndarray:
    """reference_integer_ops::AddElementwise (int8): each input minus its zero point, shifted
    left by 20, rescaled to the common scale; the sum rescaled to the output, plus zp_out,
    clamped. (MultiplyByQuantizedMultiplierSmallerThanOneExp is MultiplyByQuantizedMultiplier
    for the shifts <= 0 it gets.)"""
    r = op.rescale
    x1_t, x2_t, y_t = (graph.tensor(n) for n in (op.input, op.input2, op.output))
    a, b = _broadcast_operands(x1, x2)

    def rescaled(x: np.ndarray, zero_point: int, scaling: tuple[int, int]) -> np.ndarray:
        shifted = (x - zero_point) * (1 << r.left_shift)
        return quant.multiply_by_quantized_multiplier(shifted, *scaling).astype(np.int64)

    total = rescaled(a, x1_t.zero_point, r.input1) + rescaled(b, x2_t.zero_point, r.input2)
    out = quant.multiply_by_quantized_multiplier(total, *r.output).astype(np.int64)
    return np.clip(out + y_t.zero_point, op.act_min, op.act_max)


def mul(op: ir.Mul, graph: ir.Graph, x1: np.ndarray, x2: np.ndarray) -> np.ndarray:
    """reference_integer_ops::MulElementwise (int8): the product of the zero-point-centred
    inputs, requantized, plus zp_out, clamped."""
    x1_t, x2_t, y_t = (graph.tensor(n) for n in (op.input, op.input2, op.output))
    a, b = _broadcast_operands(x1, x2)
    product = (a - x1_t.zero_point) * (b - x2_t.zero_point)
    out = quant.multiply_by_quantized_multiplier(product, op.requant.multiplier[0],
                                                 op.requant.shift[0]).astype(np.int64)
    return np.clip(out + y_t.zero_point, op.act_min, op.act_max)


def hard_swish(op: ir.HardSwish, graph: ir.Graph, x: np.ndarray) -> np.ndarray:
    """reference_ops::HardSwish (int8), step by step in 16-bit fixed point: the input on a
    "hires" scale (x 128), once rescaled to the output scale (not yet shifted), once to the
    "reluish" scale on which +-3.0 is +-32768 (saturating), mapped from [-1, 1] to [0, 1],
    multiplied by SaturatingDoublingHighMul (truncating, to cancel the rounding bias of the
    others), shifted right to the output scale, plus zp_out, clamped."""
    x_t, y_t = graph.tensor(op.input), graph.tensor(op.output)
    p = quant.hard_swish_params(x_t.scale, y_t.scale)
    hires = (x.astype(np.int64) - x_t.zero_point) * (1 << 7)
    preshift_output = quant.saturating_rounding_doubling_high_mul_int16(hires, p.output_multiplier)
    reluish = hires
    if p.reluish_exponent > 0:
        reluish = quant.saturating_left_shift_int16(reluish, p.reluish_exponent - 1)
    reluish = quant.saturating_rounding_doubling_high_mul_int16(reluish, p.reluish_multiplier)
    if p.reluish_exponent > 0:
        reluish = quant.saturating_left_shift_int16(reluish, 1)
    if p.reluish_exponent < 0:
        reluish = quant.rounding_divide_by_power_of_two(reluish, -p.reluish_exponent)
    reluish = (reluish.astype(np.int64) + (1 << 15)) >> 1  # [-1, 1] -> [0, 1]
    output = quant.saturating_doubling_high_mul_int16(reluish, preshift_output)
    output = quant.rounding_divide_by_power_of_two(output, -p.output_exponent)
    return np.clip(output.astype(np.int64) + y_t.zero_point, quant.INT8_MIN, quant.INT8_MAX)


def relu(op: ir.Relu, graph: ir.Graph, x: np.ndarray) -> np.ndarray:
    """TFLM's ReluQuantized (requantize to the output scale, clamp at its zero) or
    Relu6Quantized (clamp the raw input between its zero and its six)."""
    x_t, y_t = graph.tensor(op.input), graph.tensor(op.output)
    if op.activation is ir.Activation.RELU6:
        return np.clip(x.astype(np.int64), op.act_min, op.act_max)
    scaled = quant.multiply_by_quantized_multiplier(x.astype(np.int64) - x_t.zero_point,
                                                    op.requant.multiplier[0],
                                                    op.requant.shift[0]).astype(np.int64)
    return np.clip(scaled + y_t.zero_point, op.act_min, op.act_max)


def transpose(op: ir.Transpose, graph: ir.Graph, x: np.ndarray) -> np.ndarray:
    return np.transpose(x, op.perm)


def table_lookup(op: ir.TableLookup, graph: ir.Graph, x: np.ndarray) -> np.ndarray:
    return np.array(op.table, dtype=np.int64)[x.astype(np.int64) + 128]


def affine_quantize(x: np.ndarray, scale: float, zero_point: int, dtype: str) -> np.ndarray:
    """reference_ops::AffineQuantize, float32 to int8 or uint8: x / (float)scale in float
    (IEEE single division, as NumPy's float32), TfLiteRound (std::round: halves away from
    zero), static_cast<int32_t>, plus the zero point, clamped to the type.

    The cast is undefined in C++ for NaN and beyond int32, and so is an int32 sum that
    overflows; TFLite and TFLM compute them as x86 does (host_tests/test_quantize_io.py
    checks both), and so does mcugen, on every core: such a quotient converts to INT32_MIN,
    and the sum wraps around. (So NaN, infinities and huge values give the type's maximum when
    the zero point is negative, its minimum otherwise.)"""
    with np.errstate(over="ignore", invalid="ignore"):  # huge / scale is inf, as in C
        steps = np.asarray(x, np.float32) / np.float32(scale)
    in_range = (steps >= -2.0**31) & (steps < 2.0**31)  # False for NaN
    safe = np.where(in_range, steps, np.float32(0))
    whole = np.trunc(safe)
    fraction = safe - whole  # exact in float32
    rounded = whole.astype(np.int64) + (fraction >= 0.5) - (fraction <= -0.5)
    converted = np.where(in_range, rounded, -2**31)
    total = (converted + zero_point + 2**31) % 2**32 - 2**31  # int32 wrap-around
    low, high = ir.TYPE_RANGES[dtype]
    return np.clip(total, low, high)


def requantize(x: np.ndarray, requant: ir.Requant, input_zero_point: int,
               output_zero_point: int, dtype: str) -> np.ndarray:
    """reference_ops::Requantize between 8-bit types: (x - zp_in) by the in/out multiplier
    (MultiplyByQuantizedMultiplier), plus zp_out, clamped to the output type. Its fast path
    for equal scales between int8 and uint8 with zero points 128 apart, x ^ 0x80, gives the
    same numbers: (2^30, 1) multiplies exactly by one, and x - zp_in + zp_out = x -+ 128 is
    always in range."""
    centred = np.asarray(x, np.int64) - input_zero_point
    scaled = quant.multiply_by_quantized_multiplier(centred, requant.multiplier[0],
                                                    requant.shift[0]).astype(np.int64)
    low, high = ir.TYPE_RANGES[dtype]
    return np.clip(scaled + output_zero_point, low, high)


def quantize(op: ir.Quantize, graph: ir.Graph, x: np.ndarray) -> np.ndarray:
    """TFLM's EvalQuantizeReference: AffineQuantize from float32, Requantize from 8 bits."""
    x_t, y_t = graph.tensor(op.input), graph.tensor(op.output)
    if x_t.dtype == "float32":
        return affine_quantize(x, y_t.scale, y_t.zero_point, y_t.dtype)
    if op.requant is None:
        raise McugenError(f"{op.OP} from {x_t.dtype} has no multiplier: run "
                          "passes.quantize.quantize_constants first")
    return requantize(x, op.requant, x_t.zero_point, y_t.zero_point, y_t.dtype)


def dequantize(op: ir.Dequantize, graph: ir.Graph, x: np.ndarray) -> np.ndarray:
    """reference_ops::Dequantize: (float)scale * (q - zero_point) in float32, rounded once.
    (Older TFLite multiplies by the double scale and rounds to float: the product of a float
    and an integer below 2^9 is exact in double, so the result is the same float.)"""
    x_t = graph.tensor(op.input)
    steps = np.asarray(x, np.int64) - x_t.zero_point
    return np.float32(x_t.scale) * steps.astype(np.float32)


def concat_columns(op: ir.ConcatColumns, graph: ir.Graph, x: np.ndarray,
                   x2: np.ndarray) -> np.ndarray:
    """reference_ops::Concatenation on axis 2, one quantization: the bytes, side by side."""
    return np.concatenate([x, x2], axis=2)


def slice_columns(op: ir.SliceColumns, graph: ir.Graph, x: np.ndarray) -> np.ndarray:
    """reference_ops::StridedSlice of axis 2, stride 1: the bytes of the columns."""
    width = graph.tensor(op.output).shape[2]
    return x[:, :, op.begin:op.begin + width]


_KERNELS: dict[type, Callable[..., np.ndarray]] = {
    ir.Conv2D: conv2d,
    ir.DepthwiseConv2D: depthwise_conv2d,
    ir.Pad: pad,
    ir.AveragePool2D: average_pool2d,
    ir.Mean: mean,
    ir.FullyConnected: fully_connected,
    ir.Reshape: reshape,
    ir.Softmax: softmax,
    ir.Add: add,
    ir.Mul: mul,
    ir.HardSwish: hard_swish,
    ir.Relu: relu,
    ir.Transpose: transpose,
    ir.TableLookup: table_lookup,
    ir.Quantize: quantize,
    ir.Dequantize: dequantize,
    ir.ConcatColumns: concat_columns,
    ir.SliceColumns: slice_columns,
}
