"""Hand-built IR graphs of one op each, for kernel tests without TensorFlow.

Weights, biases and zero points are seeded random; scales are chosen so that outputs spread
over the int8 range (an accumulator of `depth` products of int8s has a standard deviation of
about 74 * 74 * sqrt(depth)), so that the requantization and the clamps are exercised.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from mcugen.ir import (Activation, Add, AveragePool2D, ConcatColumns, Conv2D, DepthwiseConv2D,
                       SliceColumns,
                       Dequantize, FullyConnected, Graph, HardSwish, Mean, Mul, Pad, Padding,
                       QParams, Quantize, Reshape, Softmax, Tensor, Transpose)
from mcugen.geometry import Window

IN_SCALE = 0.05


def conv_output_size(size: int, kernel: int, stride: int, dilation: int, before: int,
                     after: int) -> int:
    """A window's output size along one axis (geometry's rule)."""
    return Window(kernel, stride, before, dilation, after).output_size(size)


def _activation(name: str, shape: tuple[int, ...], scale: float, zero_point: int) -> Tensor:
    return Tensor(name, shape, "int8", QParams((scale,), (zero_point,)))


def _weights(rng: np.random.Generator, name: str, shape: tuple[int, ...], channels: int,
             axis: int, per_channel: bool) -> Tensor:
    data = rng.integers(-127, 128, shape).astype(np.int8)
    scales = rng.uniform(0.002, 0.02, channels if per_channel else 1)
    return Tensor(name, shape, "int8", QParams(tuple(map(float, scales)), (0,) * len(scales),
                                               axis), data)


def _legacy_weights(rng: np.random.Generator, name: str, shape: tuple[int, ...],
                    zero_point: int) -> Tensor:
    """A uint8 model's weights as the front end holds them (w - 128, zero point z - 128): per
    tensor, over the whole range, so that w - z needs more than int8 (the extremes are there,
    as TF1's min/max quantization puts them)."""
    data = rng.integers(-128, 128, shape)
    flat = data.reshape(-1)
    flat[:2] = (-128, 127)
    rng.shuffle(flat)
    return Tensor(name, shape, "int8", QParams((0.01,), (zero_point,)),
                  flat.reshape(shape).astype(np.int8))


def _bias(rng: np.random.Generator, channels: int, scale: float) -> Tensor:
    data = rng.integers(-20000, 20000, channels).astype(np.int32)
    return Tensor("b", (channels,), "int32", QParams((scale,), (0,)), data)


def _output_scale(weights: Tensor, depth: int, spread: float = 40.0) -> float:
    w_scale = float(np.mean(weights.q.scale))
    return IN_SCALE * w_scale * 74 * 74 * math.sqrt(depth) / spread


def _graph(name: str, tensors: list[Tensor], op, inputs=("x",), outputs=("y",)) -> Graph:
    return Graph(name, {t.name: t for t in tensors}, (op,), tuple(inputs), tuple(outputs))


def conv(seed: int, h: int, w: int, cin: int, cout: int, kernel=(3, 3), stride=(1, 1),
         padding=Padding(1, 1, 1, 1), dilation=(1, 1), per_channel=True,
         activation=Activation.RELU6, zero_points=(-3, 5), spread: float = 40.0,
         legacy_zero_point: int | None = None) -> Graph:
    """legacy_zero_point: a uint8 model's convolution, weights with that zero point."""
    rng = np.random.default_rng(seed)
    kh, kw = kernel
    oh = conv_output_size(h, kh, stride[0], dilation[0], padding.top, padding.bottom)
    ow = conv_output_size(w, kw, stride[1], dilation[1], padding.left, padding.right)
    if legacy_zero_point is None:
        wt = _weights(rng, "w", (cout, kh, kw, cin), cout, 0, per_channel)
    else:
        wt = _legacy_weights(rng, "w", (cout, kh, kw, cin), legacy_zero_point)
    out_scale = _output_scale(wt, kh * kw * cin, spread)
    tensors = [_activation("x", (1, h, w, cin), IN_SCALE, zero_points[0]), wt,
               _bias(rng, cout, IN_SCALE * float(np.mean(wt.q.scale))),
               _activation("y", (1, oh, ow, cout), out_scale, zero_points[1])]
    op = Conv2D("x", "w", "b", "y", stride, dilation, padding, activation,
                legacy=legacy_zero_point is not None)
    return _graph("conv", tensors, op)


def depthwise(seed: int, h: int, w: int, cin: int, multiplier: int = 1, kernel=(3, 3),
              stride=(1, 1), padding=Padding(1, 1, 1, 1), dilation=(1, 1), per_channel=True,
              activation=Activation.RELU6, zero_points=(-3, 5), spread: float = 40.0,
              legacy_zero_point: int | None = None) -> Graph:
    rng = np.random.default_rng(seed)
    kh, kw = kernel
    cout = cin * multiplier
    oh = conv_output_size(h, kh, stride[0], dilation[0], padding.top, padding.bottom)
    ow = conv_output_size(w, kw, stride[1], dilation[1], padding.left, padding.right)
    if legacy_zero_point is None:
        wt = _weights(rng, "w", (1, kh, kw, cout), cout, 3, per_channel)
    else:
        wt = _legacy_weights(rng, "w", (1, kh, kw, cout), legacy_zero_point)
    out_scale = _output_scale(wt, kh * kw, spread)
    tensors = [_activation("x", (1, h, w, cin), IN_SCALE, zero_points[0]), wt,
               _bias(rng, cout, IN_SCALE * float(np.mean(wt.q.scale))),
               _activation("y", (1, oh, ow, cout), out_scale, zero_points[1])]
    op = DepthwiseConv2D("x", "w", "b", "y", stride, dilation, padding, multiplier, activation,
                         legacy=legacy_zero_point is not None)
    return _graph("depthwise", tensors, op)


def pointwise_depthwise(seed: int, h: int, w: int, cin: int, mid: int, stride=(2, 2),
                        padding=Padding(0, 1, 0, 1), zero_points=(-3, 6, 5),
                        legacy_zero_points: tuple[int, int] | None = None,
                        project: int = 0) -> Graph:
    """A 1x1 convolution cin -> mid, then a 3x3 depthwise on its output alone (a MobileNet's
    expansion and its depthwise): what the planar layout pairs (kernels/depthwise_planar.py).
    legacy_zero_points: a uint8 model's, the two layers' weight zero points; project: then a
    1x1 convolution mid -> project (the depthwise's output inside the arena too)."""
    rng = np.random.default_rng(seed)
    legacy = legacy_zero_points is not None
    if legacy:
        pw_w = _legacy_weights(rng, "pw_w", (mid, 1, 1, cin), legacy_zero_points[0])
        dw_w = _legacy_weights(rng, "dw_w", (1, 3, 3, mid), legacy_zero_points[1])
    else:
        pw_w = _weights(rng, "pw_w", (mid, 1, 1, cin), mid, 0, True)
        dw_w = _weights(rng, "dw_w", (1, 3, 3, mid), mid, 3, True)
    pw_b = dataclasses.replace(_bias(rng, mid, IN_SCALE * float(np.mean(pw_w.q.scale))),
                               name="pw_b")
    mid_scale = _output_scale(pw_w, cin)
    dw_b = dataclasses.replace(_bias(rng, mid, mid_scale * float(np.mean(dw_w.q.scale))),
                               name="dw_b")
    oh = conv_output_size(h, 3, stride[0], 1, padding.top, padding.bottom)
    ow = conv_output_size(w, 3, stride[1], 1, padding.left, padding.right)
    dw_out = "d" if project else "y"
    dw_scale = _output_scale(dw_w, 9) * mid_scale / IN_SCALE
    tensors = [_activation("x", (1, h, w, cin), IN_SCALE, zero_points[0]), pw_w, pw_b,
               _activation("p", (1, h, w, mid), mid_scale, zero_points[1]), dw_w, dw_b,
               _activation(dw_out, (1, oh, ow, mid), dw_scale, zero_points[2])]
    ops = [Conv2D("x", "pw_w", "pw_b", "p", (1, 1), (1, 1), Padding(), Activation.RELU6,
                  legacy=legacy),
           DepthwiseConv2D("p", "dw_w", "dw_b", dw_out, stride, (1, 1), padding, 1,
                           Activation.RELU, legacy=legacy)]
    if project:
        last_w = _weights(rng, "last_w", (project, 1, 1, mid), project, 0, True)
        last_b = dataclasses.replace(_bias(rng, project, dw_scale * float(np.mean(
            last_w.q.scale))), name="last_b")
        tensors += [last_w, last_b, _activation("y", (1, oh, ow, project),
                                                _output_scale(last_w, mid) * dw_scale /
                                                IN_SCALE, 1)]
        ops.append(Conv2D("d", "last_w", "last_b", "y", (1, 1), (1, 1), Padding(),
                          Activation.NONE))
    return Graph("pointwise_depthwise", {t.name: t for t in tensors}, tuple(ops), ("x",),
                 ("y",))


def fully_connected(seed: int, rows: int, depth: int, outputs: int, per_channel=True,
                    activation=Activation.NONE, zero_points=(7, -9),
                    legacy_zero_point: int | None = None) -> Graph:
    rng = np.random.default_rng(seed)
    if legacy_zero_point is None:
        wt = _weights(rng, "w", (outputs, depth), outputs, 0, per_channel)
    else:
        wt = _legacy_weights(rng, "w", (outputs, depth), legacy_zero_point)
    tensors = [_activation("x", (rows, depth), IN_SCALE, zero_points[0]), wt,
               _bias(rng, outputs, IN_SCALE * float(np.mean(wt.q.scale))),
               _activation("y", (rows, outputs), _output_scale(wt, depth), zero_points[1])]
    return _graph("fc", tensors, FullyConnected("x", "w", "b", "y", activation,
                                                legacy=legacy_zero_point is not None))


def repeated_blocks(seed: int, h: int, w: int, c: int, blocks: int, last_outputs: int,
                    zero_point: int = -3, projections: tuple[int, ...] | None = None) -> Graph:
    """A chain of `blocks` equal-shape blocks (3x3 depthwise, then 1x1 convolution c -> c:
    equal shapes, zero points and clamps; their own weights, biases and scales), then a 1x1
    convolution c -> last_outputs (a shape of its own): what a MobileNet's middle is.
    projections: the 1x1 convolutions are linear (no activation, as MobileNetV2's
    projections) with these output zero points, one a block."""
    rng = np.random.default_rng(seed)
    tensors = [_activation("x", (1, h, w, c), IN_SCALE, zero_point)]
    ops = []
    source = "x"

    def layer(kind: str, index: int, shape: tuple[int, ...], cout: int, depth: int) -> str:
        nonlocal source
        wt = _weights(rng, f"{kind}{index}_w", shape, cout, 3 if kind == "dw" else 0, True)
        bias = dataclasses.replace(_bias(rng, cout, IN_SCALE * float(np.mean(wt.q.scale))),
                                   name=f"{kind}{index}_b")
        linear = kind == "pw" and projections is not None and index < len(projections)
        out = _activation(f"{kind}{index}_y", (1, h, w, cout), _output_scale(wt, depth),
                          projections[index] if linear else zero_point)
        tensors.extend([wt, bias, out])
        if kind == "dw":
            ops.append(DepthwiseConv2D(source, wt.name, bias.name, out.name, (1, 1), (1, 1),
                                       Padding(1, 1, 1, 1), 1, Activation.RELU))
        else:
            ops.append(Conv2D(source, wt.name, bias.name, out.name, (1, 1), (1, 1),
                              Padding(), Activation.NONE if linear else Activation.RELU))
        source = out.name
        return source

    for index in range(blocks):
        layer("dw", index, (1, 3, 3, c), c, 9)
        layer("pw", index, (c, 1, 1, c), c, c)
    last = layer("pw", blocks, (last_outputs, 1, 1, c), last_outputs, c)
    return Graph("blocks", {t.name: t for t in tensors}, tuple(ops), ("x",), (last,))


def average_pool(seed: int, h: int, w: int, c: int, kernel=(3, 3), stride=(2, 2),
                 padding=Padding(1, 1, 1, 1), legacy: bool = False) -> Graph:
    oh = conv_output_size(h, kernel[0], stride[0], 1, padding.top, padding.bottom)
    ow = conv_output_size(w, kernel[1], stride[1], 1, padding.left, padding.right)
    tensors = [_activation("x", (1, h, w, c), IN_SCALE, 3),
               _activation("y", (1, oh, ow, c), IN_SCALE, 3)]
    return _graph("avgpool", tensors,
                  AveragePool2D("x", "y", kernel, stride, padding, Activation.NONE,
                                legacy=legacy))


def mean(seed: int, h: int, w: int, c: int) -> Graph:
    tensors = [_activation("x", (1, h, w, c), IN_SCALE, -5),
               _activation("y", (1, 1, 1, c), IN_SCALE * 0.6, 2)]
    return _graph("mean", tensors, Mean("x", "y", keep_dims=True))


def mean_axes(shape: tuple[int, ...], axes: tuple[int, ...], keep_dims: bool,
              same_quantization: bool = False) -> Graph:
    """MEAN over consecutive axes other than an image's H and W (an NCHW tensor's last)."""
    out_shape = tuple(1 if a in axes else d for a, d in enumerate(shape)
                      if keep_dims or a not in axes)
    out_q = (IN_SCALE, 6) if same_quantization else (IN_SCALE * 0.6, 2)
    tensors = [_activation("x", shape, IN_SCALE, 6), _activation("y", out_shape, *out_q)]
    return _graph("mean_axes", tensors, Mean("x", "y", keep_dims=keep_dims, axes=axes))


def softmax(seed: int, rows: int, size: int, scale: float = 0.1) -> Graph:
    """The input scale sets how far below a row's maximum an element still counts (diff_min:
    248 at 0.1, 31 at 0.5, beyond int8's 255 at 0.02)."""
    tensors = [_activation("x", (rows, size), scale, 4),
               _activation("y", (rows, size), 1 / 256, -128)]
    return _graph("softmax", tensors, Softmax("x", "y", 1.0))


def elementwise(seed: int, kind: str, shape: tuple[int, ...], second: str,
                activation=Activation.NONE) -> Graph:
    """ADD or MUL of the input x [shape] with a second operand: "same" (a 1x1 depthwise of x:
    its own scale, the same shape), "pixel" (the MEAN of x, [1, 1, 1, C], broadcast over the
    pixels as in squeeze-and-excitation), or "constant" (a constant [1, 1, W, C], broadcast
    over the rows)."""
    rng = np.random.default_rng(seed)
    _, h, w, c = shape
    x = _activation("x", shape, IN_SCALE, 6)
    ops, tensors = [], [x]
    if second == "constant":
        tensors.append(Tensor("x2", (1, 1, w, c), "int8", QParams((0.07,), (-11,)),
                              rng.integers(-128, 128, (1, 1, w, c)).astype(np.int8)))
    elif second == "pixel":
        tensors.append(_activation("x2", (1, 1, 1, c), 0.07, -11))
        ops.append(Mean("x", "x2", keep_dims=True))
    else:
        wt = _weights(rng, "w", (1, 1, 1, c), c, 3, True)
        tensors += [wt, _activation("x2", shape, 0.07, -11)]
        ops.append(DepthwiseConv2D("x", "w", None, "x2", (1, 1), (1, 1), Padding(), 1,
                                   Activation.NONE))
    out_scale = 0.12 if kind == "add" else 0.05 * 0.07 * 30
    tensors.append(_activation("y", shape, out_scale, -4))
    ops.append((Add if kind == "add" else Mul)("x", "x2", "y", activation))
    return Graph(kind, {t.name: t for t in tensors}, tuple(ops), ("x",), ("y",))


def residual_adds(seed: int, shape: tuple[int, ...], count: int) -> Graph:
    """`count` residual blocks of one shape: a 1x1 depthwise of the running tensor, added to
    it. The ADDs differ in their scales and zero points alone (as MobileNetV2's do)."""
    rng = np.random.default_rng(seed)
    c = shape[-1]
    tensors = [_activation("x", shape, IN_SCALE, 6)]
    ops = []
    source, scale = "x", IN_SCALE
    for index in range(count):
        wt = _weights(rng, f"w{index}", (1, 1, 1, c), c, 3, True)
        branch = _activation(f"d{index}", shape, float(rng.uniform(0.05, 0.1)),
                             int(rng.integers(-20, 20)))
        scale = scale * float(rng.uniform(1.1, 1.6))
        total = _activation(f"y{index}", shape, scale, int(rng.integers(-20, 20)))
        tensors += [wt, branch, total]
        ops.append(DepthwiseConv2D(source, wt.name, None, branch.name, (1, 1), (1, 1),
                                   Padding(), 1, Activation.NONE))
        ops.append(Add(source, branch.name, total.name, Activation.NONE))
        source = total.name
    return Graph("residual", {t.name: t for t in tensors}, tuple(ops), ("x",), (source,))


def hard_swish(seed: int, shape: tuple[int, ...]) -> Graph:
    tensors = [_activation("x", shape, 0.04, -20), _activation("y", shape, 0.03, -100)]
    return _graph("hard_swish", tensors, HardSwish("x", "y"))


def pad(seed: int, h: int, w: int, c: int, padding=Padding(1, 2, 0, 3)) -> Graph:
    tensors = [_activation("x", (1, h, w, c), IN_SCALE, 9),
               _activation("y", (1, h + padding.top + padding.bottom,
                                 w + padding.left + padding.right, c), IN_SCALE, 9)]
    return _graph("pad", tensors, Pad("x", "y", padding))


def transpose(seed: int, shape: tuple[int, ...], perm: tuple[int, ...]) -> Graph:
    tensors = [_activation("x", shape, IN_SCALE, 1),
               _activation("y", tuple(shape[i] for i in perm), IN_SCALE, 1)]
    return _graph("transpose", tensors, Transpose("x", "y", perm))


def reshape(seed: int, shape: tuple[int, ...], new_shape: tuple[int, ...]) -> Graph:
    """A RESHAPE of the graph input, which cannot be elided (a copy)."""
    tensors = [_activation("x", shape, IN_SCALE, 1), _activation("y", new_shape, IN_SCALE, 1)]
    return _graph("reshape", tensors, Reshape("x", "y"))


def concat_columns(shape: tuple[int, ...]) -> Graph:
    """The graph input beside itself (column tiles join their halves with this op)."""
    n, h, w, c = shape
    tensors = [_activation("x", shape, IN_SCALE, 1), _activation("y", (n, h, 2 * w, c),
                                                                 IN_SCALE, 1)]
    return _graph("concat_columns", tensors, ConcatColumns("x", "x", "y"))


def slice_columns(shape: tuple[int, ...], begin: int, width: int) -> Graph:
    """Columns [begin, begin + width) of the graph input (a column tile keeps its halo with
    this op)."""
    n, h, _, c = shape
    tensors = [_activation("x", shape, IN_SCALE, 1), _activation("y", (n, h, width, c),
                                                                 IN_SCALE, 1)]
    return _graph("slice_columns", tensors, SliceColumns("x", "y", begin))


def _typed(name: str, shape: tuple[int, ...], dtype: str,
           q: tuple[float, int] | None) -> Tensor:
    """A tensor of any activation type: q is (scale, zero point), None for float32."""
    return Tensor(name, shape, dtype, None if q is None else QParams((q[0],), (q[1],)))


def quantize(shape: tuple[int, ...], source: str, source_q: tuple[float, int] | None,
             target: str, target_q: tuple[float, int]) -> Graph:
    """One QUANTIZE: float32 -> int8/uint8 (source_q None), or between 8-bit types."""
    tensors = [_typed("x", shape, source, source_q), _typed("y", shape, target, target_q)]
    return _graph("quantize", tensors, Quantize("x", "y"))


def dequantize(shape: tuple[int, ...], source: str, source_q: tuple[float, int]) -> Graph:
    tensors = [_typed("x", shape, source, source_q), _typed("y", shape, "float32", None)]
    return _graph("dequantize", tensors, Dequantize("x", "y"))


def dequantize_requantize(shape: tuple[int, ...]) -> Graph:
    """int8 -> DEQUANTIZE -> float32 (in the arena) -> QUANTIZE -> uint8: both kernels reading
    and writing float through the arena."""
    tensors = [_typed("x", shape, "int8", (0.05, -7)), _typed("f", shape, "float32", None),
               _typed("y", shape, "uint8", (0.041, 119))]
    return Graph("dequantize_requantize", {t.name: t for t in tensors},
                 (Dequantize("x", "f"), Quantize("f", "y")), ("x",), ("y",))


def _conv_layers(rng: np.random.Generator, tensors: list[Tensor], source: str,
                 plan: list[tuple[str, int, int, int, Padding, Activation]]) -> list:
    """A chain of convolutions ("conv") and depthwise convolutions ("dw", multiplier 1), each
    (kind, output channels, kernel, stride, padding, activation), reading the tensor source
    first; appends their weights, biases and outputs to tensors (the last output is "y") and
    returns the ops."""
    ops: list = []
    _, in_h, in_w, channels = next(t.shape for t in tensors if t.name == source)
    scale = next(t.q.scale[0] for t in tensors if t.name == source)
    for index, (kind, cout, kernel, stride, pad, activation) in enumerate(plan):
        shape = (cout, kernel, kernel, channels) if kind == "conv" else (1, kernel, kernel, cout)
        wt = _weights(rng, f"w{index}", shape, cout, 0 if kind == "conv" else 3, True)
        bias = dataclasses.replace(_bias(rng, cout, scale * float(np.mean(wt.q.scale))),
                                   name=f"b{index}")
        out_h = conv_output_size(in_h, kernel, stride, 1, pad.top, pad.bottom)
        out_w = conv_output_size(in_w, kernel, stride, 1, pad.left, pad.right)
        depth = kernel * kernel * (channels if kind == "conv" else 1)
        name = "y" if index == len(plan) - 1 else f"y{index}"
        out = _activation(name, (1, out_h, out_w, cout),
                          _output_scale(wt, depth) * scale / IN_SCALE, int(rng.integers(-9, 9)))
        tensors += [wt, bias, out]
        if kind == "conv":
            ops.append(Conv2D(source, wt.name, bias.name, out.name, (stride, stride), (1, 1),
                              pad, activation))
        else:
            ops.append(DepthwiseConv2D(source, wt.name, bias.name, out.name, (stride, stride),
                                       (1, 1), pad, 1, activation))
        source, channels, scale, in_h, in_w = out.name, cout, out.q.scale[0], out_h, out_w
    return ops


def layout_first(seed: int, first: str, h: int = 14, w: int = 11, c: int = 4) -> Graph:
    """A network that starts with layout ops, as converted PyTorch models do: the input
    rearranged to NHWC by a TRANSPOSE (from NCHW) or a RESHAPE (from [1, H*W*C]), a PAD that
    no convolution can absorb (a lookup table reads it), the table (HARD_SWISH), then a
    3x3 stride-2 convolution, a 3x3 depthwise and a 1x1 convolution. The widest tensors are
    the first ones, so that the smallest arena comes from bands from the first layer on."""
    rng = np.random.default_rng(seed)
    padding = Padding(2, 1, 1, 2)
    ph, pw = h + padding.top + padding.bottom, w + padding.left + padding.right
    source_shape = (1, c, h, w) if first == "transpose" else (1, h * w * c)
    tensors = [_activation("x", source_shape, IN_SCALE, 1),
               _activation("t", (1, h, w, c), IN_SCALE, 1),
               _activation("p", (1, ph, pw, c), IN_SCALE, 1),
               _activation("s", (1, ph, pw, c), 0.04, -20)]
    ops: list = [Transpose("x", "t", (0, 2, 3, 1)) if first == "transpose"
                 else Reshape("x", "t"),
                 Pad("t", "p", padding), HardSwish("p", "s")]
    ops += _conv_layers(rng, tensors, "s", [
        ("conv", 4, 3, 2, Padding(1, 1, 1, 1), Activation.NONE),
        ("dw", 4, 3, 1, Padding(1, 1, 1, 1), Activation.RELU),
        ("conv", 5, 1, 1, Padding(), Activation.NONE)])
    return Graph(f"{first}_first", {t.name: t for t in tensors}, tuple(ops), ("x",), ("y",))


def conv_chain(seed: int, h: int = 32, w: int = 30, c: int = 3) -> Graph:
    """VWW's start in small: a 3x3 stride-2 convolution (TensorFlow's SAME padding: 0 before,
    1 after), 3x3 depthwise, 1x1 widening, 3x3 stride-2 depthwise, 1x1; then a 1x1 on the
    narrow tensor, whose output is the graph's. The widest tensors come first and the
    depthwise's 1x1 producers hold three full rows each in row bands: column tiles reach a
    smaller arena than row bands can."""
    rng = np.random.default_rng(seed)
    tensors = [_activation("x", (1, h, w, c), IN_SCALE, 1)]
    same, relu = Padding(0, 1, 0, 1), Activation.RELU
    ops = _conv_layers(rng, tensors, "x", [
        ("conv", 8, 3, 2, same, relu), ("dw", 8, 3, 1, Padding(1, 1, 1, 1), relu),
        ("conv", 16, 1, 1, Padding(), relu), ("dw", 16, 3, 2, same, relu),
        ("conv", 16, 1, 1, Padding(), relu), ("conv", 6, 1, 1, Padding(), relu)])
    return Graph("conv_chain", {t.name: t for t in tensors}, tuple(ops), ("x",), ("y",))


def pointwise_chain(seed: int, h: int, w: int, cin: int, couts: tuple[int, ...],
                    activations: tuple[Activation, ...],
                    legacy_zero_points: tuple[int | None, ...] | None = None) -> Graph:
    """A chain of 1x1 convolutions of their own shapes (cin -> couts[0] -> couts[1] ...), each
    with its activation; legacy_zero_points: per layer, a uint8 model's weights with that zero
    point (None: int8 weights)."""
    rng = np.random.default_rng(seed)
    tensors = [_activation("x", (1, h, w, cin), IN_SCALE, -3)]
    ops = []
    source, depth, scale = "x", cin, IN_SCALE
    for index, (cout, activation) in enumerate(zip(couts, activations)):
        legacy = None if legacy_zero_points is None else legacy_zero_points[index]
        shape = (cout, 1, 1, depth)
        wt = _weights(rng, f"w{index}", shape, cout, 0, True) if legacy is None else \
            _legacy_weights(rng, f"w{index}", shape, legacy)
        bias = dataclasses.replace(_bias(rng, cout, scale * float(np.mean(wt.q.scale))),
                                   name=f"b{index}")
        name = "y" if index == len(couts) - 1 else f"y{index}"
        out = _activation(name, (1, h, w, cout), _output_scale(wt, depth) * scale / IN_SCALE,
                          int(rng.integers(-9, 9)))
        tensors += [wt, bias, out]
        ops.append(Conv2D(source, wt.name, bias.name, out.name, (1, 1), (1, 1), Padding(),
                          activation, legacy=legacy is not None))
        source, depth, scale = out.name, cout, out.q.scale[0]
    return Graph("pointwise_chain", {t.name: t for t in tensors}, tuple(ops), ("x",), ("y",))
