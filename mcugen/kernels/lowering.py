"""Steps shared by the families' lowerings: shapes as kernels see them, the requantization
stage, biases (with the input offset folded in where a kernel allows it).

Zero points: the IR holds the model's; kernels add ``input_offset = -zero_point`` to inputs
and ``output_offset = +zero_point`` to outputs, as TFLite's and CMSIS-NN's kernels do. The flip
happens here, once, for every family and both kernel sets.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import geometry
from ..errors import McugenError
from ..ir import FullyConnected, Graph, Op, Tensor
from .variant import ConstArray, LayerNames


@dataclass(frozen=True)
class FeatureMap:
    """An NHWC activation (batch 1) as a kernel walks it."""

    h: int
    w: int
    c: int

    @property
    def pixels(self) -> int:
        return self.h * self.w

    @property
    def size(self) -> int:
        return self.h * self.w * self.c

    @property
    def row_bytes(self) -> int:
        return self.w * self.c


def feature_map(tensor: Tensor) -> FeatureMap:
    """A 4-D tensor as H, W, C; any other rank as one row of its elements' last axis."""
    shape = tensor.shape
    if len(shape) == 4:
        return FeatureMap(shape[1], shape[2], shape[3])
    return FeatureMap(tensor.size // shape[-1], 1, shape[-1])


@dataclass(frozen=True)
class Window:
    """A convolution's or pool's window as its kernel's template reads it (geometry.windows
    on rows and columns): size, stride, dilation, top/left padding (the bottom/right padding
    follows from the output's size)."""

    k_h: int
    k_w: int
    stride_h: int = 1
    stride_w: int = 1
    dil_h: int = 1
    dil_w: int = 1
    pad_top: int = 0
    pad_left: int = 0

    @property
    def taps(self) -> int:
        return self.k_h * self.k_w

    def axes(self) -> tuple[geometry.Window, geometry.Window]:
        """The window on rows and on columns."""
        return (geometry.Window(self.k_h, self.stride_h, self.pad_top, self.dil_h),
                geometry.Window(self.k_w, self.stride_w, self.pad_left, self.dil_w))


@dataclass(frozen=True)
class Interior:
    """The output pixels whose whole window is inside the image: rows [row_lo, row_hi) by
    columns [col_lo, col_hi) (empty ranges when there are none)."""

    row_lo: int
    row_hi: int
    col_lo: int
    col_hi: int


def interior(x: FeatureMap, y: FeatureMap, g: Window) -> Interior:
    """geometry's interior of the window on input x and output y (a negative padding crops:
    a column tile's)."""
    rows, columns = g.axes()
    return Interior(*rows.interior(x.h, y.h), *columns.interior(x.w, y.w))


def conv_window(op: Op, graph: Graph) -> Window:
    """A convolution's or pool's window (geometry.windows)."""
    rows, columns = geometry.windows(op, graph)
    return Window(k_h=rows.kernel, k_w=columns.kernel, stride_h=rows.stride,
                  stride_w=columns.stride, dil_h=rows.dilation, dil_w=columns.dilation,
                  pad_top=rows.before, pad_left=columns.before)


@dataclass(frozen=True)
class Clamp:
    """The output zero point and the fused activation's int8 range."""

    output_offset: int
    act_min: int = -128
    act_max: int = 127


def clamp(op: Op, graph: Graph) -> Clamp:
    act_min, act_max = getattr(op, "act_min", None), getattr(op, "act_max", None)
    return Clamp(output_offset=graph.tensor(op.output).zero_point,
                 act_min=-128 if act_min is None else act_min,
                 act_max=127 if act_max is None else act_max)


def input_offset(op: Op, graph: Graph, field: str = "input") -> int:
    return -graph.tensor(getattr(op, field)).zero_point


# The two C requantizations of templates/fixedpoint.c.j2.
REQUANTIZE = "requantize"  # TFLite's MultiplyByQuantizedMultiplier, any shift
REQUANTIZE_RIGHT = "requantize_right"  # the same integers when every shift is a right shift
REQUANTIZE_SINGLE = "requantize_single"  # one rounding: a uint8 FULLY_CONNECTED (quant.py)


@dataclass(frozen=True)
class Requantization:
    """Per-channel multiplier and shift tables, the C function that applies them, and the
    clamp: TFLite's output stage, acc -> clamp(MBQM(acc) + output_offset)."""

    multiplier: ConstArray
    shift: ConstArray
    function: str  # REQUANTIZE or REQUANTIZE_RIGHT
    clamp: Clamp


def requantization(op: Op, graph: Graph, names: LayerNames, channels: int,
                   padding: int = 0) -> Requantization:
    """A per-tensor pair is repeated per channel; ``padding`` zeros follow each table."""
    multiplier = np.broadcast_to(np.array(op.requant.multiplier, np.int32), (channels,)).copy()
    shift = np.broadcast_to(np.array(op.requant.shift, np.int32), (channels,)).copy()
    function = REQUANTIZE_RIGHT if bool((shift <= 0).all()) else REQUANTIZE
    if isinstance(op, FullyConnected) and op.legacy:
        function = REQUANTIZE_SINGLE
    return Requantization(
        multiplier=ConstArray(names.table("multiplier"), "int32_t", multiplier).padded(padding),
        shift=ConstArray(names.table("shift"), "int32_t", shift).padded(padding),
        function=function, clamp=clamp(op, graph))


def model_bias(op: Op, graph: Graph, channels: int) -> np.ndarray:
    """The op's int32 bias as int64 (zeros when it has none)."""
    if op.bias is None:
        return np.zeros(channels, np.int64)
    return graph.tensor(op.bias).data.astype(np.int64).reshape(channels)


@dataclass(frozen=True)
class SplitWeights:
    """A filter's integers as the matrix kernels take them: ``w - zero_point = stored +
    offset`` exactly, with int8 ``stored`` values and one ``offset`` for the whole filter.

    int8 models have symmetric weights (offset 0). A uint8 model's weights, held shifted to
    int8 (``w - 128``), have a zero point z of their own, and w - z spans up to 255 values
    (TF1's min/max quantization reaches both ends), which int8 cannot hold: the stored values
    are then the shifted weights and the offset is -z. Each accumulator then needs
    ``offset * sum(x)`` over the inputs it reads (one sum per pixel, shared by every output
    channel: gemmlowp's input-sum correction), and its folded bias ``- zp_in * offset *
    depth``; kernels/requantize.py bounds the accumulators with both."""

    stored: np.ndarray  # int8 values, the filter's shape
    offset: int


def split_weights(tensor: Tensor) -> SplitWeights:
    data = tensor.data.astype(np.int64)
    if tensor.q is None or tensor.q.per_channel or tensor.zero_point == 0:
        return SplitWeights(data.astype(np.int8), 0)
    centred = data - tensor.zero_point
    if centred.min(initial=0) >= -128 and centred.max(initial=0) <= 127:
        return SplitWeights(centred.astype(np.int8), 0)  # the zero point folds in
    return SplitWeights(data.astype(np.int8), -tensor.zero_point)


def weight_values(tensor: Tensor) -> np.ndarray:
    """A filter's integers minus its zero point (int8 for symmetric weights, up to nine bits
    for a uint8 model's)."""
    data = tensor.data.astype(np.int64)
    if tensor.q is None or tensor.q.per_channel:
        return data
    return data - tensor.zero_point


def folded_bias(bias: np.ndarray, weight_rows: np.ndarray, input_zero_point: int,
                offset: int = 0) -> np.ndarray:
    """bias - zp_in * sum(w) per row: where every tap reads a real input or the zero point,
    sum((x - zp) * w) + b = sum(x * w) + this, which saves an add per MAC (TinyEngine's trick;
    exact in integers). With a weight offset (SplitWeights) w is stored + offset."""
    rows = weight_rows.reshape(weight_rows.shape[0], -1).astype(np.int64)
    sums = rows.sum(axis=1) + offset * rows.shape[1]
    folded = bias - input_zero_point * sums
    if np.any(np.abs(folded) >= 2**31):
        raise McugenError("folded bias overflows int32")
    return folded.astype(np.int32)


def bias_array(names: LayerNames, values: np.ndarray, padding: int = 0,
               role: str = "bias") -> ConstArray:
    return ConstArray(names.table(role), "int32_t", values.astype(np.int32)).padded(padding)


def ceil_to(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple
