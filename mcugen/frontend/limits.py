"""Bounds on what a model may ask for, checked as it is imported, before anything is sized,
planned or generated.

A .tflite is untrusted input: a few bytes can claim a tensor of 2^62 elements, a zero point
of 2^40, a scale that is NaN or denormal, a dilation of 2^30, or an op that writes its own
input. TFLite's own Prepare functions refuse some of these and let others overflow; the C we
generate indexes with int32 and requantizes with TFLite's fixed point, so each bound below is
what keeps that arithmetic exact and free of undefined behaviour. Everything outside them is
refused with one line, naming the tensor or op and the bound.

The caps are far above any model a microcontroller runs (MobileNet at 224x224 has tensors of
a few MB and windows of 7 pixels), and far below where int32 index arithmetic wraps.
"""

from __future__ import annotations

import math
import os
import stat
from pathlib import Path
from typing import Iterable

import numpy as np

from .. import ir
from ..errors import McugenError

# A flatbuffer addresses its bytes with 32-bit offsets: no .tflite is larger (bigger models
# keep their weights outside the flatbuffer, which mcugen does not read).
MAX_MODEL_BYTES = (1 << 31) - 1
# Bytes of one tensor: offsets and element counts in the C are int32 (and a flatbuffer is at
# most 2 GiB anyway).
MAX_TENSOR_BYTES = (1 << 31) - 1
# Height and width of a feature map, and a window's extent, stride or padding: the C forms
# products such as oy * stride + ky * dilation in int32.
MAX_SPATIAL = 1 << 14
# Taps of one window (filter height x width): the kernels keep a pointer per tap on the stack
# (a 64x64 global pooling is 4,096 taps, 16 KB on a Cortex-M).
MAX_WINDOW_TAPS = 4096
MAX_RANK = 8
# Scales of activations: positive, and far from float32's ends, so that 6 / scale (the RELU6
# bound, which TFLite converts to int32), the ratios of scales TFLite's QuantizeMultiplier
# takes, and their float32 products are all finite and normal.
MIN_ACTIVATION_SCALE = 2.0 ** -24  # TFLite casts 6 / scale to int32 (RELU6): UB past 2^31
MAX_ACTIVATION_SCALE = 2.0 ** 64
# Scales of weights may be 0 (a channel of zeros) but not negative, NaN or huge.
MAX_WEIGHT_SCALE = 2.0 ** 64
# Integer ranges of the types whose zero points mean something.
_RANGES = {"int8": (-128, 127), "uint8": (0, 255), "int16": (-32768, 32767),
           "int32": (-(1 << 31), (1 << 31) - 1)}
_ITEMSIZE = {"float32": 4, "float16": 2, "int32": 4, "uint8": 1, "int64": 8, "int16": 2,
             "int8": 1, "bool": 1, "float64": 8, "uint32": 4, "uint16": 2, "uint64": 8}


# A MobileNet built from options (--arch, --alpha, --res, --classes) is made in float by
# TensorFlow and calibrated on a batch of 32 images at once before it is converted, so its
# size is bounded before anything is built: the largest activation (int8) and the classifier's
# weights. Microcontrollers have at most a few MB of RAM and flash.
MAX_MOBILENET_ACTIVATION_BYTES = 8 << 20
MAX_MOBILENET_CLASSIFIER_BYTES = 64 << 20


def check_mobilenet_request(alpha: float, height: int, width: int, classes: int) -> None:
    """Refuse a MobileNet too large to build, from estimates by its shapes: the largest
    activation is at half the resolution with about 96 x alpha channels (V2's first
    expansion; V1 has 64 x alpha there, V3 64), the classifier takes at most
    max(1280, 1280 x alpha) features (V1 1024 x alpha)."""
    activation = math.ceil(height / 2) * math.ceil(width / 2) * math.ceil(96 * alpha)
    if activation > MAX_MOBILENET_ACTIVATION_BYTES:
        raise McugenError(f"--res {height}x{width} with --alpha {alpha:g}: the largest "
                          f"activation would take about {activation / 2**20:,.0f} MB; mcugen "
                          f"builds MobileNets up to {MAX_MOBILENET_ACTIVATION_BYTES >> 20} MB "
                          "(a microcontroller has a few MB of RAM at most)")
    classifier = math.ceil(max(1280, 1280 * alpha)) * classes
    if classifier > MAX_MOBILENET_CLASSIFIER_BYTES:
        raise McugenError(f"--classes {classes}: the classifier's weights would take about "
                          f"{classifier / 2**20:,.0f} MB; mcugen builds MobileNets with up to "
                          f"{MAX_MOBILENET_CLASSIFIER_BYTES >> 20} MB of them")


def printable(text: str) -> str:
    """Text from a model file, safe inside a one-line message: control characters (a newline
    in a custom op's name) are written as escapes."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


# The longest file name most file systems take (bytes, in the file system's encoding).
MAX_NAME_BYTES = 255


def check_path_components(path: Path) -> None:
    """An output path whose folder names the file system cannot hold, refused before
    anything is built."""
    for part in Path(path).parts:
        if len(os.fsencode(part)) > MAX_NAME_BYTES:
            raise McugenError(f"--out {str(path)[:60]}...: an output folder name of "
                              f"{len(os.fsencode(part))} bytes; file systems take at most "
                              f"{MAX_NAME_BYTES}")


def read_bounded(path: Path) -> bytes:
    """The bytes of a model file, refused before reading when it cannot be a .tflite: not a
    regular file (a device such as /dev/zero, a pipe) or larger than a flatbuffer can be.
    OSErrors (no such file, a directory, no permission) are the caller's to word."""
    info = os.stat(path)
    if stat.S_ISDIR(info.st_mode):
        raise IsADirectoryError(path)
    if not stat.S_ISREG(info.st_mode):
        raise McugenError(f"{path} is not a regular file; give a .tflite model file")
    if info.st_size > MAX_MODEL_BYTES:
        raise McugenError(f"{path} has {info.st_size:,} bytes; a .tflite flatbuffer has at most "
                          f"{MAX_MODEL_BYTES:,}")
    with open(path, "rb") as file:
        data = file.read(MAX_MODEL_BYTES + 1)  # the file may have grown since
    if len(data) > MAX_MODEL_BYTES:
        raise McugenError(f"{path} has more than {MAX_MODEL_BYTES:,} bytes; a .tflite "
                          "flatbuffer has at most that")
    return data


def check_tensor(name: str, dtype: str, shape: tuple[int, ...],
                 q: ir.QParams | None) -> None:
    """A tensor as the file declares it: its shape's size and its quantization's values."""
    if len(shape) > MAX_RANK:
        raise McugenError(f"tensor {name!r} has {len(shape)} dimensions; mcugen takes at most "
                          f"{MAX_RANK}")
    nbytes = math.prod(shape) * _ITEMSIZE.get(dtype, 8)
    if nbytes > MAX_TENSOR_BYTES:
        raise McugenError(f"tensor {name!r} of shape {list(shape)} ({dtype}) would take "
                          f"{nbytes:,} bytes; mcugen takes tensors of at most "
                          f"{MAX_TENSOR_BYTES:,} bytes")
    if q is None:
        return
    low, high = _RANGES.get(dtype, (None, None))
    for zero_point in q.zero_point:
        if low is not None and not low <= zero_point <= high:
            raise McugenError(f"tensor {name!r} has zero point {zero_point}, outside {dtype}'s "
                              f"range [{low}, {high}]")
    for scale in q.scale:
        if not (math.isfinite(scale) and 0.0 <= scale <= MAX_WEIGHT_SCALE):
            raise McugenError(f"tensor {name!r} has scale {scale}: scales must be finite, "
                              f"not negative, and at most 2^64")


# How many inputs each op takes in TFLM (an optional one given as -1 counts): an extra input
# may change what TFLM computes (PAD's third is its pad value) or crash it, so none is ignored.
OP_INPUTS = {"CONV_2D": (2, 3), "DEPTHWISE_CONV_2D": (2, 3), "FULLY_CONNECTED": (2, 3),
             "PAD": (2, 2), "AVERAGE_POOL_2D": (1, 1), "MEAN": (2, 2), "RESHAPE": (1, 2),
             "SOFTMAX": (1, 1), "ADD": (2, 2), "MUL": (2, 2), "HARD_SWISH": (1, 1),
             "RELU": (1, 1), "RELU6": (1, 1), "TRANSPOSE": (2, 2)}


def check_operands(where: str, kind: str, inputs: tuple[int, ...], outputs: tuple[int, ...],
                   tensors: int) -> None:
    """An op's tensor indices: each names a tensor of the subgraph (an input may be -1,
    absent), and as many inputs as the op takes."""
    for index in inputs:
        if not -1 <= index < tensors:
            raise McugenError(f"{where}: input tensor {index} does not exist (the model has "
                              f"{tensors})")
    for index in outputs:
        if not 0 <= index < tensors:
            raise McugenError(f"{where}: output tensor {index} does not exist (the model has "
                              f"{tensors})")
    if kind == "DEPTHWISE_CONV_2D" and len(inputs) == 3 and inputs[2] == -1:
        raise McugenError(f"{where}: its bias is given as absent (-1), which TFLite refuses "
                          "and TFLM crashes on; leave the operand out instead")
    low, high = OP_INPUTS.get(kind, (0, len(inputs)))
    if not low <= len(inputs) <= high:
        expected = f"{low}" if low == high else f"{low} to {high}"
        raise McugenError(f"{where}: has {len(inputs)} inputs, expected {expected}")


def check_graph(graph: ir.Graph) -> None:
    """The imported graph: activations' scales, who writes what, and window geometry."""
    _check_writers(graph)
    for name in _activations(graph):
        _check_activation(graph.tensors[name])
    for index, op in enumerate(graph.ops):
        where = f"op {index} ({op.OP})"
        if graph.tensors[op.input].is_constant:  # the activation operand (ADD/MUL: either)
            raise McugenError(f"{where} computes from the constant {op.input!r} alone (a "
                              "converter folds such ops); mcugen compiles ops on activations")
        for name in ir.op_inputs(op) + ir.op_outputs(op):
            _check_spatial(graph.tensors[name], where)
        if isinstance(op, (ir.Conv2D, ir.DepthwiseConv2D)):
            kernel = graph.tensors[op.filter].shape[1:3]
            _check_window(where, kernel, op.stride, op.dilation, op.padding)
        elif isinstance(op, ir.AveragePool2D):
            _check_window(where, op.filter_size, op.stride, (1, 1), op.padding)
        elif isinstance(op, ir.Pad):
            _check_padding(where, op.padding)
        elif isinstance(op, ir.FullyConnected):
            _check_bias_scale(graph, op, where)
        elif isinstance(op, ir.Softmax):  # over the last axis: TFLM takes the input's
            shapes = graph.tensors[op.input].shape, graph.tensors[op.output].shape
            if shapes[0] != shapes[1]:
                raise McugenError(f"{where}: input {list(shapes[0])} and output "
                                  f"{list(shapes[1])} differ in shape")


def _activations(graph: ir.Graph) -> Iterable[str]:
    names = set(graph.inputs) | set(graph.outputs)
    for op in graph.ops:
        names.update(ir.op_outputs(op))
        names.update(n for n in ir.op_inputs(op) if not graph.tensors[n].is_constant)
    return sorted(names)


def _check_writers(graph: ir.Graph) -> None:
    """Each op output is written once, by one op, and is neither the model's input nor a
    constant; the model's output is written by an op (a graph whose output is its input, or a
    constant, computes nothing, and the C would never write it)."""
    written: dict[str, int] = {}
    for index, op in enumerate(graph.ops):
        where = f"op {index} ({op.OP})"
        for name in ir.op_outputs(op):
            if name in ir.op_inputs(op):
                raise McugenError(f"{where} writes its own input {name!r}")
            if name in graph.inputs:
                raise McugenError(f"{where} writes the model's input {name!r}")
            if graph.tensors[name].is_constant:
                raise McugenError(f"{where} writes the constant {name!r}")
            if name in written:
                raise McugenError(f"{where} writes {name!r}, which op {written[name]} "
                                  "already writes")
            written[name] = index
    for name in graph.outputs:
        if name in graph.inputs:
            raise McugenError(f"the model's output {name!r} is its input: there is nothing to "
                              "compute")
        if name not in written:
            raise McugenError(f"the model's output {name!r} is not written by any op (a "
                              "constant output would never be copied to the caller)")


def _check_activation(tensor: ir.Tensor) -> None:
    if tensor.q is None:  # a float tensor (the import's own checks say where it may be)
        return
    scale = tensor.scale
    if math.isfinite(scale) and 0 < scale < MIN_ACTIVATION_SCALE:
        # What untrained weights give (batch norms at mean 0, variance 1): say so, not only
        # that a bound was crossed.
        raise McugenError(
            f"the model is degenerate: tensor {tensor.name!r} has scale {scale:.3g} (below "
            f"2^-24), so its activations are nearly constant and every input gives nearly the "
            f"same output; TFLM refuses such a model too (its RELU6 and SOFTMAX constants "
            f"overflow). This is what untrained weights give: check that the weights are "
            f"trained, that their batch norms hold real statistics (not mean 0, variance 1), "
            f"and that the calibration images look like the real inputs")
    if not (math.isfinite(scale) and MIN_ACTIVATION_SCALE <= scale <= MAX_ACTIVATION_SCALE):
        raise McugenError(f"tensor {tensor.name!r} has scale {scale}; an activation's scale "
                          "must be between 2^-24 and 2^64")


def _check_spatial(tensor: ir.Tensor, where: str) -> None:
    if len(tensor.shape) == 4 and max(tensor.shape[1:3]) > MAX_SPATIAL:
        raise McugenError(f"{where}: tensor {tensor.name!r} is {tensor.shape[1]}x"
                          f"{tensor.shape[2]} pixels; mcugen takes at most {MAX_SPATIAL} a side")


def _check_window(where: str, kernel: tuple[int, int], stride: tuple[int, int],
                  dilation: tuple[int, int], padding: ir.Padding) -> None:
    for axis, (k, s, d) in enumerate(zip(kernel, stride, dilation)):
        extent = (k - 1) * d + 1
        what = "height" if axis == 0 else "width"
        for value, name in ((extent, "window"), (s, "stride")):
            if value > MAX_SPATIAL:
                raise McugenError(f"{where}: a {name} {what} of {value} (filter {k}, dilation "
                                  f"{d}, stride {s}) exceeds mcugen's {MAX_SPATIAL}")
    if kernel[0] * kernel[1] > MAX_WINDOW_TAPS:
        raise McugenError(f"{where}: a {kernel[0]}x{kernel[1]} window has "
                          f"{kernel[0] * kernel[1]:,} taps; mcugen takes at most "
                          f"{MAX_WINDOW_TAPS:,}")
    _check_padding(where, padding)


def _check_padding(where: str, padding: ir.Padding) -> None:
    sides = (padding.top, padding.bottom, padding.left, padding.right)
    if max(sides) > MAX_SPATIAL:
        raise McugenError(f"{where}: padding {list(sides)} exceeds mcugen's {MAX_SPATIAL} a "
                          "side")


def _check_bias_scale(graph: ir.Graph, op: ir.FullyConnected, where: str) -> None:
    """TFLM's per-tensor FULLY_CONNECTED (GetQuantizedConvolutionMultipler) refuses a bias
    whose scale is not the input's times the weights' (an unquantized bias counts as 0)."""
    weights = graph.tensors[op.weights]
    if op.bias is None or weights.q is None or weights.q.per_channel:
        return
    bias = graph.tensors[op.bias]
    x, y = graph.tensors[op.input], graph.tensors[op.output]
    product = float(np.float32(x.scale) * np.float32(weights.q.scale[0]))
    bias_scale = bias.q.scale[0] if bias.q is not None else 0.0
    if not abs(product - bias_scale) / y.scale <= 0.02:
        raise McugenError(f"{where}: bias {bias.name!r} has scale {bias_scale:.6g}, not the "
                          f"input's times the weights' ({product:.6g}); TFLM refuses such a "
                          "layer")
